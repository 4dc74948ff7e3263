"""Matrix identifiers of Kares accounts.

Every account is ``@<localpart>:<KARES_SERVER_NAME>``; the localpart is the
account's id (32 lowercase hex characters), which Matrix allows (the grammar is
``[a-z0-9._=/+-]+``) and which names no one: neither the phone number nor the
name appears in an id other people's clients show and store. Clients show the
account's name as its display name.
"""

from __future__ import annotations

import re

_LOCALPART = re.compile(r"^[0-9a-f]{32}$")


def user_id(account_id: str, server_name: str) -> str:
    return f"@{account_id}:{server_name}"


def localpart(user: str, server_name: str) -> str | None:
    """The account id a Matrix user id (or a bare localpart) names on this
    server, or None when it is not one of ours."""
    if user.startswith("@"):
        local, sep, server = user[1:].partition(":")
        if not sep or server != server_name:
            return None
    else:
        local = user
    return local if _LOCALPART.fullmatch(local) else None
