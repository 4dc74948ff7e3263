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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto
from kares.accounts.service import TOKEN_PREFIX
from kares.db import new_id
from kares.devices import service as devices
from kares.errors import Problem
from kares.identity.auth import TRACKER_KIND
from kares.identity.models import Session
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
        used = sess.last_seen_at if sess.last_seen_at > sess.created_at else None
        out.append(TrackerView(t, used, sess.revoked_at is not None or sess.expires_at <= now))
    return out


async def revoke(s: AsyncSession, *, account_id: str, tracker_id: str) -> None:
    t = await s.get(Tracker, tracker_id) if len(tracker_id) <= 32 else None
    if t is None or t.account_id != account_id:
        raise Problem(404, "tracker.not_found", "No such tracker credential.")
    sess = await s.get(Session, t.session_id)
    if sess is not None and sess.revoked_at is None:
        sess.revoked_at = clock.utcnow()
    await s.commit()


async def of_session(s: AsyncSession, session_id: str) -> Tracker | None:
    q = select(Tracker).where(Tracker.session_id == session_id)
    return (await s.execute(q)).scalar_one_or_none()


def set_tid(tracker: Tracker, tid: str | None) -> None:
    """OwnTracks' two-letter tracker id, shown on friends' maps (written with the
    upload that carried it)."""
    if tid and tid != tracker.tid and len(tid) <= 4 and tid.isprintable():
        tracker.tid = tid


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
