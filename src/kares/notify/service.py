"""Notifications. Every feature that tells a user something goes through here.

``send`` (or ``add`` for one account) writes the in-app inbox entry and, in the
same transaction, enqueues one ``notify.push`` job per device of the account
that registered a push channel. Delivery runs as a job (``notify/jobs.py``),
never in the request, and asks again at that moment whether the device should
get it (``decide``):

* the device still has a live session of the account (signing out stops
  pushes to it) and has not reported its Notifications permission ``denied``;
* the notification is unread and not older than ``push_ttl_seconds``;
* the account's preferences: a category turned off gets no pushes, and during
  quiet hours pushes are *held* until the quiet hours end (the job waits);
* ``sos`` and ``security`` bypass preferences and quiet hours, and cannot be
  turned off.

The inbox always has the notification, whatever happens to the push.

A notice about something that has its own record (an SOS alert) stores a
reference to it, not a copy of its personal details: ``data["render"]`` names
a renderer that the owning domain registered (``@renderer("sos")``), and the
inbox renders the text from the record when it is read (``shown``). The stored
title and body are what a push carries and what the inbox shows if the record
is gone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from kares import clock, crypto, events, jobs, live
from kares.db import insert_for, new_id
from kares.devices import service as devices
from kares.errors import Problem
from kares.fields import zone_names
from kares.gateways import push as push_mod
from kares.identity import service as identity
from kares.notify.models import InboxHead, Notification, NotificationPreference, PushToken
from kares.notify.schemas import CATEGORIES, URGENT
from kares.privacy import ports

if TYPE_CHECKING:
    from kares.privacy.catalog import Catalog

PUSH_JOB = "notify.push"
HELD = "quiet hours"  # why a held push job waits (jobs.last_error)
TITLE_MAX = 128


# --- preferences and the delivery decision (pure) ----------------------------------------


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    return frozenset(zone_names())


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    time_zone: str

    def release(self, now: datetime) -> datetime | None:
        """When the quiet hours around ``now`` end (UTC), or None if ``now`` is outside."""
        zone = ZoneInfo(self.time_zone)
        local = now.astimezone(zone)
        wall = local.time().replace(tzinfo=None, fold=0)
        s, e = self.start, self.end
        inside = (s <= wall < e) if s < e else (wall >= s or wall < e)
        if not inside:
            return None
        day = local.date() if (s < e or wall < e) else local.date() + timedelta(days=1)
        end = datetime.combine(day, e, tzinfo=zone).astimezone(UTC)
        # A wall-clock end skipped by a DST change can map to an instant not after now.
        return end if end > now else now + timedelta(minutes=1)


@dataclass(frozen=True)
class Prefs:
    muted: frozenset[str] = frozenset()
    quiet: QuietHours | None = None

    def enabled(self, category: str) -> bool:
        return category in URGENT or category not in self.muted


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "skip", "hold"]
    reason: str = ""
    until: datetime | None = None


def decide(
    *,
    category: str,
    now: datetime,
    prefs: Prefs,
    signed_in: bool,
    permission: str | None,
    read: bool,
    expires_at: datetime,
) -> Decision:
    """Whether a device gets a push now, never, or when quiet hours end."""
    if not signed_in:
        return Decision("skip", "no live session on the device")
    if permission == "denied":
        return Decision("skip", "notifications permission closed")
    if read:
        return Decision("skip", "already read")
    if now >= expires_at:
        return Decision("skip", "expired")
    if category in URGENT:
        return Decision("send")
    if not prefs.enabled(category):
        return Decision("skip", "category turned off")
    until = prefs.quiet.release(now) if prefs.quiet else None
    if until is not None:
        if until >= expires_at:
            return Decision("skip", "expires during quiet hours")
        return Decision("hold", HELD, until)
    return Decision("send")


# --- the inbox -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """A notification as the inbox shows it."""

    title: str
    body: str
    data: dict[str, Any]


Renderer = Callable[[AsyncSession, Notification], Awaitable[Shown | None]]
RENDER = "render"  # the key in ``data`` naming the renderer of a notice
_renderers: dict[str, Renderer] = {}


def renderer(kind: str) -> Callable[[Renderer], Renderer]:
    """Register how notices whose ``data["render"]`` is ``kind`` are shown: the
    renderer reads the record they reference (None: show what is stored)."""

    def register(fn: Renderer) -> Renderer:
        _renderers[kind] = fn
        return fn

    return register


async def shown(s: AsyncSession, note: Notification) -> Shown:
    """The notification as the inbox shows it, rendered now from what it references."""
    data = dict(note.data or {})
    kind = data.get(RENDER)
    fn = _renderers.get(kind) if isinstance(kind, str) else None
    if fn is not None:
        got = await fn(s, note)
        if got is not None:
            return got
    return Shown(note.title, note.body, data)


async def send(
    s: AsyncSession,
    *,
    account_ids: Sequence[str],
    category: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> list[Notification]:
    """Tell several accounts the same thing (each gets their own inbox entry) and
    enqueue the pushes, in the caller's transaction: nothing happens unless the
    caller commits. ``sos`` and ``security`` go to every device at once,
    whatever the preferences and quiet hours say."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown notification category {category!r}")
    if len(title) > TITLE_MAX:
        raise ValueError(f"notification title longer than {TITLE_MAX} characters")
    now = clock.utcnow()
    notes = [
        Notification(
            account_id=account_id,
            category=category,
            title=title,
            body=body,
            data=dict(data or {}),
            created_at=now,
        )
        for account_id in dict.fromkeys(account_ids)  # once each, in order
    ]
    s.add_all(notes)
    await s.flush()
    for note in sorted(notes, key=lambda n: n.account_id):  # locks taken in one order
        await _place(s, note)
    await _enqueue_pushes(s, notes, now=now)
    return notes


async def _place(s: AsyncSession, note: Notification) -> None:
    """Give a new entry the next position of its account's inbox stream, and tell
    the account's sockets once it commits. The position comes from the account's
    ``InboxHead``, which deletions never lower, so no number is given twice; its
    row stays locked until the transaction ends (PostgreSQL; SQLite has one
    writer), so positions commit in the order they count and a stream that has
    seen 12 never later finds an 11 (docs/MESSAGING.md, "Positions and resume")."""
    heads: Table = InboxHead.__table__  # type: ignore[assignment]
    take = (
        insert_for(s)(heads)
        .values(account_id=note.account_id, seq=1)
        .on_conflict_do_update(index_elements=[heads.c.account_id], set_={"seq": heads.c.seq + 1})
        .returning(heads.c.seq)
    )
    seq = int((await s.execute(take)).scalar_one())
    nt: Table = Notification.__table__  # type: ignore[assignment]
    await s.execute(update(nt).where(nt.c.id == note.id).values(seq=seq))
    set_committed_value(note, "seq", seq)
    account_id = note.account_id
    events.on_commit(s, lambda: live.hub.deliver(kind="inbox", about=account_id, seq=seq))


async def add(
    s: AsyncSession,
    *,
    account_id: str,
    category: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> Notification:
    """Tell one account something: its inbox, and its devices' pushes."""
    (note,) = await send(
        s, account_ids=[account_id], category=category, title=title, body=body, data=data
    )
    return note


NEVER = datetime.max.replace(tzinfo=UTC)


async def _enqueue_pushes(s: AsyncSession, notes: list[Notification], *, now: datetime) -> None:
    """One push job per device with a push channel, unless it is clear now that the
    device gets nothing; held until quiet hours end when they apply. The job asks
    again when it runs (and applies the push TTL then)."""
    by_account = {n.account_id: n for n in notes}
    targets = (
        await s.execute(
            select(PushToken.account_id, PushToken.device_id).where(
                PushToken.account_id.in_(list(by_account))
            )
        )
    ).all()
    if not targets:
        return
    perms = await devices.permissions_for_many(s, [d for _a, d in targets])
    prefs: dict[str, Prefs] = {}
    live: dict[str, set[str]] = {}
    for account_id, device_id in targets:
        note = by_account[account_id]
        if account_id not in prefs:
            prefs[account_id] = await preferences_of(s, account_id)
            live[account_id] = await _live_devices(s, account_id)
        d = decide(
            category=note.category,
            now=now,
            prefs=prefs[account_id],
            signed_in=device_id in live[account_id],
            permission=perms[device_id].get("notifications"),
            read=False,
            expires_at=NEVER,
        )
        if d.action == "skip":
            continue
        job = jobs.enqueue(
            s,
            PUSH_JOB,
            {"notification_id": note.id, "device_id": device_id},
            account_id=account_id,
            run_at=d.until if d.action == "hold" else now,
        )
        if d.action == "hold":
            job.last_error = HELD


async def _live_devices(s: AsyncSession, account_id: str) -> set[str]:
    sessions = await identity.list_sessions(s, account_id=account_id)
    return {x.device_id for x in sessions if x.device_id}


async def list_for(
    s: AsyncSession, *, account_id: str, limit: int, before: str | None = None
) -> list[Notification]:
    q = select(Notification).where(Notification.account_id == account_id)
    if before:
        anchor = await s.get(Notification, before)
        if anchor is not None and anchor.account_id == account_id:
            q = q.where(Notification.created_at <= anchor.created_at, Notification.id != anchor.id)
    q = q.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await s.execute(q)).scalars())


async def unread_count(s: AsyncSession, *, account_id: str) -> int:
    q = select(func.count()).where(
        Notification.account_id == account_id, Notification.read_at.is_(None)
    )
    return int((await s.execute(q)).scalar_one())


async def mark_read(s: AsyncSession, *, account_id: str, notification_id: str | None) -> int:
    """Mark one (or, with None, every) unread notification read. Returns how many."""
    q = update(Notification).where(
        Notification.account_id == account_id, Notification.read_at.is_(None)
    )
    if notification_id is not None:
        q = q.where(Notification.id == notification_id)
    res = await s.execute(q.values(read_at=clock.utcnow()))
    await s.commit()
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def exists(s: AsyncSession, *, account_id: str, notification_id: str) -> bool:
    q = select(Notification.id).where(
        Notification.id == notification_id, Notification.account_id == account_id
    )
    return (await s.execute(q)).first() is not None


# --- preferences -----------------------------------------------------------------------


def _prefs_of(row: NotificationPreference | None) -> Prefs:
    if row is None:
        return Prefs()
    quiet = None
    if row.quiet_start and row.quiet_end and row.time_zone and row.time_zone in time_zones():
        quiet = QuietHours(
            time.fromisoformat(row.quiet_start), time.fromisoformat(row.quiet_end), row.time_zone
        )
    return Prefs(frozenset(row.muted or ()), quiet)


async def preferences_of(s: AsyncSession, account_id: str) -> Prefs:
    return _prefs_of(await s.get(NotificationPreference, account_id))


KEEP: Any = object()


async def set_preferences(
    s: AsyncSession,
    *,
    account_id: str,
    categories: dict[str, bool] | None,
    quiet: tuple[str, str, str] | None = KEEP,
) -> Prefs:
    """Change the named categories and (unless left out) the quiet hours
    (start, end, time zone), all checked first: one bad entry changes nothing."""
    categories = categories or {}
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise Problem(
            422,
            "preferences.category_unknown",
            f"Unknown categories {', '.join(unknown)}; known: {', '.join(CATEGORIES)}.",
            categories=unknown,
        )
    locked = sorted(c for c, on in categories.items() if c in URGENT and not on)
    if locked:
        raise Problem(
            422,
            "preferences.cannot_disable",
            "SOS and security notifications cannot be turned off.",
            categories=locked,
        )
    if quiet is not KEEP and quiet is not None:
        start, end, zone = quiet
        if start == end:
            raise Problem(
                422,
                "preferences.quiet_hours_invalid",
                "Quiet hours need a start and an end that differ.",
            )
        if zone not in time_zones():
            raise Problem(
                422,
                "preferences.time_zone_unknown",
                "Give an IANA time zone such as Asia/Shanghai.",
            )
    now = clock.utcnow()
    row = await s.get(NotificationPreference, account_id)
    if row is None:
        row = NotificationPreference(account_id=account_id, muted=[], updated_at=now)
        s.add(row)
    muted = set(row.muted or ())
    for c, on in categories.items():
        (muted.discard if on else muted.add)(c)
    row.muted = sorted(muted)
    if quiet is not KEEP:
        row.quiet_start, row.quiet_end, row.time_zone = quiet or (None, None, None)
        # Pushes held for the old quiet hours are looked at again now.
        await s.execute(
            update(jobs.Job)
            .where(
                jobs.Job.account_id == account_id,
                jobs.Job.kind == PUSH_JOB,
                jobs.Job.status == jobs.QUEUED,
                jobs.Job.last_error == HELD,
                jobs.Job.run_at > now,
            )
            .values(run_at=now, updated_at=now)
        )
    row.updated_at = now
    await s.commit()
    return _prefs_of(row)


def prefs_out(p: Prefs) -> dict[str, Any]:
    quiet = None
    if p.quiet is not None:
        quiet = {
            "start": _hhmm(p.quiet.start),
            "end": _hhmm(p.quiet.end),
            "time_zone": p.quiet.time_zone,
        }
    return {
        "categories": {c: p.enabled(c) for c in CATEGORIES},
        "always_on": list(URGENT),
        "quiet_hours": quiet,
    }


# --- push channels ---------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    provider: str
    token: str | None = None
    endpoint: str | None = None
    p256dh: str | None = None
    auth: str | None = None
    voip_token: str | None = None  # APNs: the PushKit token incoming calls wake with


def _normalise(reg: Registration, push: push_mod.Push) -> tuple[str, str]:
    """(value to store, the identity it is found by); raises TokenError."""
    if reg.provider == "webpush":
        st = push.settings
        value = push_mod.normalise_webpush(
            reg.endpoint or "",
            reg.p256dh or "",
            reg.auth or "",
            hosts=st.webpush_hosts,
            allow_http=st.webpush_allow_http,
        )
        return value, reg.endpoint or ""
    token = reg.token or ""
    if reg.provider == "apns":
        token = push_mod.normalise_apns(token)
    elif reg.provider == "fcm":
        token = push_mod.normalise_fcm(token)
    elif not token.isprintable():
        raise push_mod.TokenError("The token must be printable text.")
    return token, token


async def register_push(
    s: AsyncSession, push: push_mod.Push, *, account_id: str, device_id: str, reg: Registration
) -> PushToken:
    """Store (or replace) the device's push channel. A token registered by another
    device before moves here: pushes follow the device that registered last."""
    await devices.get_owned(s, account_id=account_id, device_id=device_id)
    if push.provider(reg.provider) is None:
        raise Problem(
            422,
            "push.provider_unavailable",
            f"This server does not deliver through {reg.provider}.",
            providers=push.available(),
        )
    try:
        value, identity = _normalise(reg, push)
        voip = push_mod.normalise_apns(reg.voip_token) if reg.voip_token is not None else None
        if voip is not None and reg.provider != "apns":
            raise push_mod.TokenError("Only an APNs registration has a VoIP token.")
    except push_mod.EndpointNotAllowed as exc:
        raise Problem(422, "push.endpoint_not_allowed", str(exc)) from exc
    except push_mod.TokenError as exc:
        raise Problem(422, "push.token_invalid", str(exc)) from exc
    digest = crypto.blind_index(f"{reg.provider}:{identity}", purpose="push_token")
    for attempt in range(3):
        now = clock.utcnow()
        try:
            await s.execute(
                delete(PushToken).where(
                    PushToken.token_hash == digest, PushToken.device_id != device_id
                )
            )
            stmt = insert_for(s)(PushToken).values(
                id=new_id(),
                account_id=account_id,
                device_id=device_id,
                provider=reg.provider,
                token=value,
                token_hash=digest,
                voip_token=voip,
                created_at=now,
                updated_at=now,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[PushToken.device_id],
                set_={
                    "account_id": stmt.excluded.account_id,
                    "provider": stmt.excluded.provider,
                    "token": stmt.excluded.token,
                    "token_hash": stmt.excluded.token_hash,
                    "voip_token": stmt.excluded.voip_token,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            await s.execute(stmt)
            await s.commit()
            break
        except IntegrityError:
            # Another registration of the same token or device committed between
            # our statements; start again (the last one wins).
            await s.rollback()
            if attempt == 2:
                raise Problem(
                    409, "push.conflict", "The device registered at the same time; try again."
                ) from None
    return await get_push(s, account_id=account_id, device_id=device_id)


async def get_push(s: AsyncSession, *, account_id: str, device_id: str) -> PushToken:
    await devices.get_owned(s, account_id=account_id, device_id=device_id)
    row = (
        await s.execute(
            select(PushToken)
            .where(PushToken.device_id == device_id, PushToken.account_id == account_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if row is None:
        raise Problem(404, "push.not_registered", "This device has no push channel.")
    return row


async def list_push(s: AsyncSession, *, account_id: str) -> list[PushToken]:
    q = select(PushToken).where(PushToken.account_id == account_id)
    return list((await s.execute(q.order_by(PushToken.created_at))).scalars())


async def remove_push(s: AsyncSession, *, account_id: str, device_id: str) -> None:
    await devices.get_owned(s, account_id=account_id, device_id=device_id)
    await s.execute(
        delete(PushToken).where(
            PushToken.device_id == device_id, PushToken.account_id == account_id
        )
    )
    await s.commit()


def wakes(row: PushToken) -> bool:
    """Whether an incoming call can wake the device by a push (kares.calls)."""
    return row.voip_token is not None if row.provider == "apns" else True


def token_hint(row: PushToken) -> str:
    if row.provider == "webpush":
        try:
            return urlsplit(json.loads(row.token)["endpoint"]).hostname or ""
        except (ValueError, KeyError, TypeError):
            return ""
    return "…" + row.token[-6:]


# --- delivery (called by the notify.push job) -------------------------------------------


@dataclass(frozen=True)
class PushPlan:
    token_id: str
    token_hash: str
    provider: str
    token: str
    message: push_mod.PushMessage


async def plan_push(
    s: AsyncSession, cat: Catalog, *, notification_id: str, device_id: str, ttl_seconds: int
) -> PushPlan | Decision:
    """What to push to the device for this notification, or why not (now)."""
    from kares.identity.models import Account
    from kares.privacy import service as privacy

    note = await s.get(Notification, notification_id)
    if note is None:
        return Decision("skip", "notification gone")
    row = (
        await s.execute(
            select(PushToken).where(
                PushToken.device_id == device_id, PushToken.account_id == note.account_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return Decision("skip", "no push channel on the device")
    account = await s.get(Account, note.account_id)
    if account is None:
        return Decision("skip", "account gone")
    try:
        await privacy.check_for_job(s, cat, account, "notifications", "push")
    except Problem as exc:
        return Decision("skip", exc.code)
    now = clock.utcnow()
    expires_at = note.created_at + timedelta(seconds=ttl_seconds)
    perms = await devices.permissions_of(s, device_id)
    d = decide(
        category=note.category,
        now=now,
        prefs=await preferences_of(s, note.account_id),
        signed_in=device_id in await _live_devices(s, note.account_id),
        permission=perms.get("notifications"),
        read=note.read_at is not None,
        expires_at=expires_at,
    )
    if d.action != "send":
        return d
    if note.category not in URGENT and await live.presence.connected(note.account_id, device_id):
        # the device holds a socket: the inbox entry reached it there (an SOS or a
        # security alert is pushed all the same)
        return Decision("skip", "device connected")
    msg = push_mod.PushMessage(
        id=note.id,
        category=note.category,
        title=note.title,
        body=note.body,
        urgent=note.category in URGENT,
        expires_at=expires_at,
        badge=await unread_count(s, account_id=note.account_id),
    )
    return PushPlan(row.id, row.token_hash, row.provider, row.token, msg)


@dataclass(frozen=True)
class WakePlan:
    token_id: str
    token_hash: str
    provider: str
    token: str
    voip: bool  # the token is the APNs VoIP token (forgotten alone when invalid)


async def plan_wake(
    s: AsyncSession, cat: Catalog, *, account_id: str, device_id: str, until: datetime
) -> WakePlan | Decision:
    """Where to ring the account's device for an incoming call that rings until
    ``until`` (a VoIP push), or why not. The same checks as a notification's
    push, for a notice of the ``calls`` category that expires with the ringing
    (quiet hours that outlast it, or the category turned off: no ring), and the
    device must hold no socket (a socket rings it already)."""
    from kares.identity.models import Account
    from kares.privacy import service as privacy

    row = (
        await s.execute(
            select(PushToken).where(
                PushToken.device_id == device_id, PushToken.account_id == account_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return Decision("skip", "no push channel on the device")
    if not wakes(row):
        return Decision("skip", "no VoIP token on the device")
    account = await s.get(Account, account_id)
    if account is None:
        return Decision("skip", "account gone")
    try:
        await privacy.check_for_job(s, cat, account, "notifications", "push")
    except Problem as exc:
        return Decision("skip", exc.code)
    perms = await devices.permissions_of(s, device_id)
    d = decide(
        category="calls",
        now=clock.utcnow(),
        prefs=await preferences_of(s, account_id),
        signed_in=device_id in await _live_devices(s, account_id),
        permission=perms.get("notifications"),
        read=False,
        expires_at=until,
    )
    if d.action != "send":
        return Decision("skip", d.reason)  # a held ring would come after the ringing
    if await live.presence.connected(account_id, device_id):
        return Decision("skip", "device connected")
    voip = row.provider == "apns"
    token = row.voip_token if voip and row.voip_token is not None else row.token
    return WakePlan(row.id, row.token_hash, row.provider, token, voip)


async def forget_voip(s: AsyncSession, *, token_id: str, token_hash: str) -> bool:
    """Remove a VoIP token APNs calls no longer valid (the device's alert token
    stays), unless the device has registered again since."""
    res = await s.execute(
        update(PushToken)
        .where(PushToken.id == token_id, PushToken.token_hash == token_hash)
        .values(voip_token=None)
    )
    await s.commit()
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def forget_token(s: AsyncSession, *, token_id: str, token_hash: str) -> bool:
    """Remove a token the provider says is no longer valid, unless the device has
    registered a different one since."""
    res = await s.execute(
        delete(PushToken).where(PushToken.id == token_id, PushToken.token_hash == token_hash)
    )
    await s.commit()
    return bool(res.rowcount)  # type: ignore[attr-defined]


# the privacy core (and every layer below notify) tells a person through this
ports.register_teller(add)


# --- account deletion (policy 5.4) -------------------------------------------------------------

# keys of a notice's data that name the person it is about (not its recipient)
ABOUT_KEYS = ("account_id", "acknowledged_by")


async def _notices_about(s: AsyncSession, e: ports.Erasure) -> None:
    """Other people's notices about a deleted person (their SOS, their arriving
    somewhere, their answering an SOS) go with the person: they carry the name,
    and the inbox would show where. In the deletion's transaction."""
    if e.scope != "account":
        return
    about = [Notification.data[k].as_string() == e.account_id for k in ABOUT_KEYS]
    cond = about[0]
    for c in about[1:]:
        cond = cond | c
    res = await s.execute(
        delete(Notification)
        .where(Notification.account_id != e.account_id, cond)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount:  # type: ignore[attr-defined]
        n = int(res.rowcount)  # type: ignore[attr-defined]
        e.removed["notifications"] = e.removed.get("notifications", 0) + n


ports.register_erasure("before", _notices_about)
