"""What the privacy core needs from the domains above it, handed in by them.

The core decides; the domains know some of the facts it decides on. It never
imports them: each registers its part when its service module is imported
(``kares.domains`` imports them all):

* what a device reports: its operating-system permission states (devices);
* how to tell a person something: an inbox entry and its pushes (notify);
* whether a caller may read another person's data for a function, by that
  person's choices (families, and later any domain with such choices).

It also defines :class:`Allowed`, what the core hands the domains back: the
function a caller was admitted to and what must be coarsened.

A port nobody registered fails loudly (``RuntimeError``) rather than answer
"allowed" or "nothing to say": a missing piece must never open a door.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from kares.identity.auth import Caller


@dataclass
class Allowed:
    """What the guard established for one request (or one watch frame, one job)."""

    function: str
    feature: str | None
    caller: Caller | None
    # sensitive categories that must be coarsened to their fallback
    degraded: dict[str, str] = field(default_factory=dict)
    # the calling device's reported permissions, when the checks read them
    # (None: not read; a handler that needs them asks ports.device_permissions)
    permissions: dict[str, str] | None = None

    @property
    def account_id(self) -> str:
        if self.caller is None:
            raise RuntimeError("public route has no caller")
        return self.caller.account.id


class Teller(Protocol):
    async def __call__(
        self,
        s: AsyncSession,
        *,
        account_id: str,
        category: str,
        title: str,
        body: str,
        data: dict[str, Any] | None = None,
    ) -> Any: ...


PermissionsReader = Callable[[AsyncSession, str], Awaitable[dict[str, str]]]
# Decides whether the caller may read data about another account for a
# function: returns None to allow, or raises a Problem.
SubjectCheck = Callable[[AsyncSession, Allowed, str], Awaitable[None]]

_permissions: list[PermissionsReader] = []
_tellers: list[Teller] = []
_subject_checks: list[SubjectCheck] = []


def _one(kind: str, found: list[Any]) -> Any:
    if not found:
        raise RuntimeError(f"no domain registered the privacy core's {kind} port")
    return found[-1]


def register_permissions(reader: PermissionsReader) -> None:
    """The devices domain: ``reader(s, device_id)`` -> {permission: state}."""
    if reader not in _permissions:
        _permissions.append(reader)


def register_teller(teller: Teller) -> None:
    """The notify domain: tell one account something, in the caller's transaction."""
    if teller not in _tellers:
        _tellers.append(teller)


def register_subject_check(check: SubjectCheck) -> None:
    if check not in _subject_checks:
        _subject_checks.append(check)


async def device_permissions(s: AsyncSession, device_id: str) -> dict[str, str]:
    reader: PermissionsReader = _one("device permissions", _permissions)
    return await reader(s, device_id)


async def tell(
    s: AsyncSession,
    *,
    account_id: str,
    category: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> None:
    teller: Teller = _one("teller", _tellers)
    await teller(s, account_id=account_id, category=category, title=title, body=body, data=data)


def subject_checks() -> list[SubjectCheck]:
    """Every registered check; none registered means no one may read another's data."""
    return list(_subject_checks)


# --- erasure (policy 5.2, 5.4) -------------------------------------------------------------
#
# The rights engine (kares.rights.erase) deletes rows through the declarations alone.
# What a deletion sets off beyond rows (a derived summary to rebuild, a device to
# revoke, a picture another table points at) is the domain's to know: each registers
# a hook here, and the engine calls every one in the deletion's own transaction.


@dataclass(frozen=True)
class Erasure:
    """One deletion, as the hooks see it.

    ``scope`` is "account" (the whole account goes; hooks run before and after
    the rows are walked) or "chosen" (one category, optionally in a time range
    ``since`` <= t < ``until``; the account stays)."""

    account_id: str
    scope: str  # "account" | "chosen"
    category: str | None = None
    since: Any = None  # datetime | None
    until: Any = None  # datetime | None
    # rows a hook deleted itself, per table (added to what the deletion reports)
    removed: dict[str, int] = field(default_factory=dict)
    # the deletion's runtime, for hooks that reach beyond the database (files)
    rt: Any = None


ErasureHook = Callable[[AsyncSession, Erasure], Awaitable[None]]

_erasure_hooks: dict[str, list[ErasureHook]] = {"before": [], "after": []}


def register_erasure(when: str, hook: ErasureHook) -> None:
    """``when`` is "before" (the rows are all still there) or "after" (the rows
    are gone, the transaction not yet committed)."""
    found = _erasure_hooks[when]
    if hook not in found:
        found.append(hook)


def erasure_hooks(when: str) -> list[ErasureHook]:
    return list(_erasure_hooks[when])


# --- legal holds ------------------------------------------------------------------------
#
# Policy 5.2: where a law requires data to be kept, it is kept (stored only) until
# the obligation ends. Retention keeps the holds; the rights engine asks here
# before it deletes anything of an account.

HoldCheck = Callable[[AsyncSession, str], Awaitable["str | None"]]
_hold_checks: list[HoldCheck] = []


def register_hold_check(check: HoldCheck) -> None:
    if check not in _hold_checks:
        _hold_checks.append(check)


async def held(s: AsyncSession, account_id: str) -> str | None:
    """Why the account's data must be kept for now (a legal hold), or None."""
    for check in _hold_checks:
        why = await check(s, account_id)
        if why is not None:
            return why
    return None
