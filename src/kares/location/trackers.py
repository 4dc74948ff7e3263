"""Tracker credentials: a member lets a tracking app or logger upload their
location (OwnTracks, Overland, GPSLogger, ...), and nothing else.

A credential is a session of kind ``tracker`` on a device of kind
``tracker``: it is shown once, listed with its last use (the session's), and
revoked like any session. The guard refuses it everywhere except the upload
routes (``guard(..., trackers=True)``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto, events
from kares.db import new_id
from kares.devices import service as devices
from kares.errors import Problem
from kares.identity import service as identity
from kares.identity.auth import TRACKER_KIND
from kares.identity.models import Session
from kares.identity.service import TOKEN_PREFIX
from kares.location.models import Tracker

KINDS = ("owntracks", "overland", "other")
TRACKER_TOKEN_PREFIX = TOKEN_PREFIX + "t"
TRACKER_DAYS = 3650
MAX_TRACKERS = 20
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class TrackerView:
    tracker: Tracker
    last_used_at: datetime | None
    revoked: bool


def _username(name: str) -> str:
    """A readable, unique-enough user name for apps that ask for one (OwnTracks
    makes it part of its topics): the name's letters and a random suffix."""
    slug = _SLUG.sub("-", name.lower()).strip("-")[:24] or "tracker"
    return f"{slug}-{secrets.token_hex(3)}"


async def create(
    s: AsyncSession, *, account_id: str, name: str, kind: str, ip: str
) -> tuple[Tracker, str]:
    """A new credential; returns it with its secret (shown this once)."""
    from kares.families.service import clean_name

    clean = clean_name(name, max_len=64, code="tracker.invalid_name")
    if kind not in KINDS:
        raise Problem(422, "tracker.invalid_kind", f"The kind is one of {', '.join(KINDS)}.")
    live = await list_for(s, account_id=account_id)
    if sum(1 for t in live if not t.revoked) >= MAX_TRACKERS:
        raise Problem(409, "tracker.limit", f"At most {MAX_TRACKERS} tracker credentials.")
    now = clock.utcnow()
    tracker_id = new_id()
    device_key = crypto.blind_index(f"tracker:{tracker_id}", purpose="device")
    device, _ = await devices.touch(
        s,
        account_id=account_id,
        device_key=device_key,
        kind="tracker",
        model=kind,
        os=None,
        os_version=None,
        app_version=None,
        language=None,
        now=now,
    )
    token = TRACKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    sess = Session(
        account_id=account_id,
        token_hash=crypto.token_hash(token),
        device_id=device.id,
        kind=TRACKER_KIND,
        method="credential",
        label=clean,
        device_key=device_key,
        device_model=kind,
        ip=ip,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=TRACKER_DAYS),
    )
    s.add(sess)
    await s.flush()
    for _ in range(5):
        username = _username(clean)
        taken = await s.execute(select(Tracker.id).where(Tracker.username == username))
        if taken.first() is None:
            break
    t = Tracker(
        id=tracker_id,
        account_id=account_id,
        session_id=sess.id,
        device_id=device.id,
        name=clean,
        kind=kind,
        username=username,
        created_at=now,
    )
    s.add(t)
    await s.commit()
    return t, token


async def list_for(s: AsyncSession, *, account_id: str) -> list[TrackerView]:
    q = (
        select(Tracker, Session)
        .join(Session, Session.id == Tracker.session_id)
        .where(Tracker.account_id == account_id)
        .order_by(Tracker.created_at, Tracker.id)
    )
    now = clock.utcnow()
    out = []
    for t, sess in (await s.execute(q)).all():
        out.append(TrackerView(t, *identity.credential_state(sess, now)))
    return out


async def revoke(s: AsyncSession, *, account_id: str, tracker_id: str) -> None:
    t = await s.get(Tracker, tracker_id) if len(tracker_id) <= 32 else None
    if t is None or t.account_id != account_id:
        raise Problem(404, "tracker.not_found", "No such tracker credential.")
    sess = await s.get(Session, t.session_id)
    if sess is not None and sess.revoked_at is None:
        sess.revoked_at = clock.utcnow()
    await s.commit()


@dataclass(frozen=True)
class Credential:
    """What an upload needs of the tracker behind its session."""

    id: str
    username: str
    tid: str | None


# session id -> its tracker. A tracker's user name never changes and its session
# never moves to another tracker; a revoked one fails authentication before this
# is asked, and a tid written by another process is only written again.
_by_session: dict[str, Credential] = {}
BY_SESSION_MAX = 50_000


async def of_session(s: AsyncSession, session_id: str) -> Credential | None:
    found = _by_session.get(session_id)
    if found is not None:
        return found
    q = select(Tracker.id, Tracker.username, Tracker.tid).where(Tracker.session_id == session_id)
    row = (await s.execute(q)).first()
    if row is None:
        return None
    if len(_by_session) >= BY_SESSION_MAX:
        _by_session.clear()
    found = _by_session[session_id] = Credential(row.id, row.username, row.tid)
    return found


def known(session_id: str) -> Credential | None:
    """The tracker credential of a session, when this process has read it already
    (:func:`of_session` remembers it): the steady state asks no query."""
    return _by_session.get(session_id)


def tid_changes(tracker: Credential, tid: str | None) -> bool:
    """Whether :func:`set_tid` would write this tracker id."""
    return bool(tid) and tid != tracker.tid and len(tid or "") <= 4 and (tid or "").isprintable()


async def set_tid(s: AsyncSession, session_id: str, tracker: Credential, tid: str | None) -> None:
    """OwnTracks' two-letter tracker id, shown on friends' maps, written with the
    upload that carried it (and remembered once that commits)."""
    if not tid_changes(tracker, tid):
        return
    await s.execute(update(Tracker).where(Tracker.id == tracker.id).values(tid=tid))
    newer = Credential(tracker.id, tracker.username, tid)
    events.on_commit(s, lambda: _by_session.__setitem__(session_id, newer))


async def tids_for(s: AsyncSession, account_ids: list[str]) -> dict[str, str]:
    """The tracker id each person's OwnTracks app chose, if any."""
    if not account_ids:
        return {}
    q = (
        select(Tracker.account_id, Tracker.tid)
        .where(Tracker.account_id.in_(account_ids), Tracker.tid.is_not(None))
        .order_by(Tracker.created_at)
    )
    return {a: t for a, t in (await s.execute(q)).all() if t}
