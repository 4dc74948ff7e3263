"""Watches: a kids' or elders' watch introduces itself, a family's owner or
guardian pairs it with a dependant, and from then on it is a device of the
person wearing it, reporting under their consents, until it is unpaired."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto, jobs
from kares.db import UTCDateTime, insert_for
from kares.devices import service as devices
from kares.errors import Problem, retry_after
from kares.families import service as families
from kares.identity.models import Session
from kares.privacy import ports
from kares.privacy.catalog import Catalog
from kares.watches.models import Watch, WatchHelloCount

WATCH_TOKEN_PREFIX = "kares_w"
FORGET_JOB = "watches.forget_unpaired"
HELLO_WINDOW = timedelta(hours=1)


WATCH_SESSION_DAYS = 3650


PAIR_PREFIX = "kares-watch:pair?"


_IMEI_RE = re.compile(r"^[0-9A-Za-z]{8,20}$")


def _imei_hash(imei: str) -> str:
    return crypto.blind_index(imei.upper(), purpose="watch-imei")


def report_key(w: Watch) -> str:
    """What names the watch in the keys of what it reports (a fix's client id,
    an alarm's key): a prefix of its IMEI's keyed hash, never the IMEI, which is
    kept nowhere in plaintext (docs/WATCHES_AND_SOS.md)."""
    return w.imei_hash[:16]


def pairing_text(imei: str, secret: str) -> str:
    """What the watch shows as a QR code for a guardian to scan."""
    return f"{PAIR_PREFIX}imei={imei}&s={secret}"


def parse_pairing(text: str) -> tuple[str, str]:
    text = text.strip()
    if not text.startswith(PAIR_PREFIX) or len(text) > 256:
        raise Problem(400, "watch.pairing_invalid", "That is not a Kares watch pairing code.")
    fields = dict(p.partition("=")[::2] for p in text[len(PAIR_PREFIX) :].split("&"))
    imei, secret = fields.get("imei", ""), fields.get("s", "")
    if not _IMEI_RE.match(imei) or not secret:
        raise Problem(400, "watch.pairing_invalid", "That is not a Kares watch pairing code.")
    return imei, secret


async def count_hello(s: AsyncSession, *, peer: str, limit: int) -> None:
    """Count one introduction from this peer address in its hour, or refuse it
    (429 ``watch.hello_limit``). One statement decides (an upsert that starts a
    new hour or adds one, returning the count), so a burst sent at once counts
    one by one; a refused request's count goes with its rolled-back transaction."""
    now = clock.utcnow()
    t = WatchHelloCount.__table__
    stale = t.c.window_start <= now - HELLO_WINDOW
    stmt = insert_for(s)(WatchHelloCount).values(
        peer_hash=crypto.blind_index(peer, purpose="watch-hello-peer"),
        window_start=now,
        count=1,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.peer_hash],
        set_={
            "count": case((stale, 1), else_=t.c.count + 1),
            "window_start": case((stale, literal(now, UTCDateTime())), else_=t.c.window_start),
        },
    ).returning(t.c.count, t.c.window_start)
    count, started = (await s.execute(stmt)).one()
    if count > limit:
        # a request that waited for the row may find an hour started after its own "now"
        wait = (started + HELLO_WINDOW - max(now, started)).total_seconds()
        await s.rollback()
        raise Problem(
            429,
            "watch.hello_limit",
            "Too many watches were introduced from this network in the last hour.",
            headers=retry_after(wait),
        )


async def watch_hello(
    s: AsyncSession,
    *,
    imei: str,
    model: str | None,
    peer: str = "",
    per_hour: int | None = None,
    forget_after: timedelta = timedelta(days=1),
) -> tuple[Watch, str, str]:
    """A watch introduces itself: a fresh credential and pairing secret (the old
    ones stop working). A paired watch must be unpaired by its family first.
    ``per_hour``: introductions a peer address may make in an hour. An
    introduced watch that is not paired within ``forget_after`` is forgotten
    (a job): it must introduce itself again."""
    if not _IMEI_RE.match(imei):
        raise Problem(422, "watch.invalid_imei", "An IMEI or serial is 8 to 20 letters or digits.")
    if per_hour is not None:
        await count_hello(s, peer=peer, limit=per_hour)
    w = (
        await s.execute(select(Watch).where(Watch.imei_hash == _imei_hash(imei)))
    ).scalar_one_or_none()
    if w is not None and w.status == "paired":
        raise Problem(
            409, "watch.already_paired", "This watch is paired; its family must unpair it first."
        )
    now = clock.utcnow()
    if w is None:
        w = Watch(imei_hash=_imei_hash(imei), imei_tail=imei[-4:], created_at=now)
        s.add(w)
    token = WATCH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    secret = secrets.token_urlsafe(16)
    w.status = "unpaired"
    w.model = model
    w.token_hash = crypto.token_hash(token)
    w.secret_hash = crypto.token_hash(secret)
    w.last_seen_at = now
    await s.flush()
    _plan_forgetting(s, w.id, seen=now, at=now + forget_after)
    await s.commit()
    return w, token, secret


def _plan_forgetting(s: AsyncSession, watch_id: str, *, seen: datetime, at: datetime) -> None:
    """Forget the watch at ``at`` unless it is paired or introduces itself after ``seen``."""
    jobs.enqueue(s, FORGET_JOB, {"watch_id": watch_id, "seen": seen.isoformat()}, run_at=at)


async def forget_unpaired(s: AsyncSession, *, watch_id: str, seen: datetime) -> bool:
    """Forget a watch that is unpaired and has not introduced itself since
    ``seen``; and the hello counts whose hour is over. True if the watch went."""
    now = clock.utcnow()
    await s.execute(
        delete(WatchHelloCount).where(WatchHelloCount.window_start <= now - HELLO_WINDOW)
    )
    res = await s.execute(
        delete(Watch).where(
            Watch.id == watch_id,
            Watch.status == "unpaired",
            Watch.account_id.is_(None),
            Watch.last_seen_at.is_(None) | (Watch.last_seen_at <= seen),
        )
    )
    await s.commit()
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def watch_by_imei(s: AsyncSession, imei: str) -> Watch | None:
    """The watch that introduced itself with this IMEI (or protocol id)."""
    if not _IMEI_RE.match(imei):
        return None
    q = select(Watch).where(Watch.imei_hash == _imei_hash(imei))
    return (await s.execute(q)).scalar_one_or_none()


async def watch_by_token(s: AsyncSession, token: str) -> Watch | None:
    if not token.startswith(WATCH_TOKEN_PREFIX) or len(token) > 128:
        return None
    q = select(Watch).where(Watch.token_hash == crypto.token_hash(token))
    return (await s.execute(q)).scalar_one_or_none()


async def pair_watch(
    s: AsyncSession, *, actor_id: str, family_id: str, dependant_id: str, text: str
) -> Watch:
    """A family's owner or guardian binds a watch to one of its dependants."""
    await families.require_admin(s, family_id, actor_id)
    m = await families.member(s, family_id, dependant_id)
    if m is None or m.role != "dependant":
        raise Problem(404, "dependant.not_found", "No such dependant in this family.")
    imei, secret = parse_pairing(text)
    w = (
        await s.execute(select(Watch).where(Watch.imei_hash == _imei_hash(imei)))
    ).scalar_one_or_none()
    if (
        w is None
        or w.status != "unpaired"
        or w.secret_hash is None
        or w.token_hash is None
        or not crypto.constant_time_equal(w.secret_hash, crypto.token_hash(secret))
    ):
        raise Problem(
            400,
            "watch.pairing_invalid",
            "That pairing code is not valid (any more). Show a fresh one on the watch.",
        )
    now = clock.utcnow()
    device, _ = await devices.touch(
        s,
        account_id=dependant_id,
        device_key=crypto.blind_index(f"watch:{w.id}", purpose="device"),
        kind="watch",
        model=w.model,
        os=None,
        os_version=None,
        app_version=None,
        language=None,
        now=now,
    )
    sess = Session(
        account_id=dependant_id,
        token_hash=w.token_hash,
        device_id=device.id,
        kind="watch",
        method="pairing",
        label="watch",
        device_key=device.device_key,
        device_model=w.model,
        ip="0.0.0.0",  # noqa: S104 - not an address the watch used; none yet
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=WATCH_SESSION_DAYS),
    )
    s.add(sess)
    await s.flush()
    w.status = "paired"
    w.secret_hash = None
    w.account_id = dependant_id
    w.family_id = family_id
    w.paired_by = actor_id
    w.device_id = device.id
    w.session_id = sess.id
    w.paired_at = now
    await s.commit()
    return w


async def unpair_watch(
    s: AsyncSession, *, actor_id: str, watch_id: str, forget_after: timedelta = timedelta(days=1)
) -> None:
    """The family's owner or a guardian (or the wearer) unpairs: the watch's
    credential stops working at once; it must introduce itself again (and is
    forgotten if it is not paired again within ``forget_after``)."""
    w = await s.get(Watch, watch_id)
    if w is None or w.status != "paired":
        raise Problem(404, "watch.not_found", "No such paired watch.")
    if actor_id != w.account_id:
        if w.family_id is None:
            raise Problem(404, "watch.not_found", "No such paired watch.")
        try:
            await families.require_admin(s, w.family_id, actor_id)
        except Problem as exc:
            raise Problem(404, "watch.not_found", "No such paired watch.") from exc
    now = clock.utcnow()
    if w.session_id:
        sess = await s.get(Session, w.session_id)
        if sess is not None:
            sess.revoked_at = now
    w.status = "unpaired"
    w.token_hash = None
    w.secret_hash = None
    w.account_id = None
    w.family_id = None
    w.session_id = None
    w.device_id = None
    _plan_forgetting(s, w.id, seen=now, at=now + forget_after)
    await s.commit()


async def set_permissions(
    s: AsyncSession, cat: Catalog, *, actor_id: str, watch_id: str, states: dict[str, str]
) -> tuple[Watch, dict[str, str]]:
    """A family's owner or guardian answers the watch's permission questions for
    its wearer (a watch has no pop-up a child could answer, policy 1.6.1 and
    the minors section): the states land on the watch's device as if it had
    reported them. 404 ``watch.not_found`` for anyone else."""
    w = await s.get(Watch, watch_id)
    if w is None or w.status != "paired" or w.family_id is None or w.account_id is None:
        raise Problem(404, "watch.not_found", "No such paired watch.")
    try:
        await families.require_admin(s, w.family_id, actor_id)
    except Problem as exc:
        raise Problem(404, "watch.not_found", "No such paired watch.") from exc
    if w.device_id is None:
        raise Problem(404, "watch.not_found", "No such paired watch.")
    perms = await devices.report_permissions(
        s, cat, account_id=w.account_id, device_id=w.device_id, states=states
    )
    return w, perms


async def family_watches(s: AsyncSession, *, actor_id: str, family_id: str) -> list[Watch]:
    await families.require_member(s, family_id, actor_id)
    q = select(Watch).where(Watch.family_id == family_id, Watch.status == "paired")
    return list((await s.execute(q.order_by(Watch.paired_at))).scalars())


# --- account deletion (policy 5.4) -------------------------------------------------------------


async def _revoke_on_erasure(s: AsyncSession, e: ports.Erasure) -> None:
    """The watches a deleted person wore are revoked and forgotten: their
    credential dies with the row, and a watch must introduce itself and be paired
    again, like a new one. In the deletion's transaction."""
    if e.scope != "account":
        return
    res = await s.execute(
        delete(Watch)
        .where(Watch.account_id == e.account_id)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount:  # type: ignore[attr-defined]
        e.removed["watches"] = e.removed.get("watches", 0) + int(res.rowcount)  # type: ignore[attr-defined]


ports.register_erasure("before", _revoke_on_erasure)
