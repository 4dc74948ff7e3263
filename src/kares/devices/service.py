"""Device actions: recognise a device at sign-in, record its permission states."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock, crypto
from kares.db import insert_for
from kares.devices.models import Device, DevicePermission, Watch
from kares.errors import Problem
from kares.privacy.catalog import Catalog


async def touch(
    s: AsyncSession,
    *,
    account_id: str,
    device_key: str,
    kind: str,
    model: str | None,
    os: str | None,
    os_version: str | None,
    app_version: str | None,
    language: str | None,
    now: datetime,
) -> tuple[Device, bool]:
    """The account's device with this key, created if new; returns (device, created)."""
    # Insert-if-absent, so two first sign-ins from one device at once do not
    # collide on (account_id, device_key): exactly one of them creates it.
    stmt = (
        insert_for(s)(Device)
        .values(
            account_id=account_id,
            device_key=device_key,
            kind=kind,
            first_seen_at=now,
            last_seen_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Device.account_id, Device.device_key])
    )
    created = (await s.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]
    dev = (
        await s.execute(
            select(Device).where(Device.account_id == account_id, Device.device_key == device_key)
        )
    ).scalar_one()
    dev.last_seen_at = now
    for attr, value in (
        ("model", model),
        ("os", os),
        ("os_version", os_version),
        ("app_version", app_version),
        ("language", language),
    ):
        if value is not None:
            setattr(dev, attr, value)
    await s.flush()
    return dev, created


async def list_for(s: AsyncSession, *, account_id: str) -> list[Device]:
    q = select(Device).where(Device.account_id == account_id)
    return list((await s.execute(q.order_by(Device.last_seen_at.desc()))).scalars())


async def get_owned(s: AsyncSession, *, account_id: str, device_id: str) -> Device:
    dev = await s.get(Device, device_id)
    if dev is None or dev.account_id != account_id:
        raise Problem(404, "device.not_found", "No such device.")
    return dev


async def permissions_of(s: AsyncSession, device_id: str) -> dict[str, str]:
    # Columns, not ORM objects: rows are written by an upsert the identity map
    # does not see.
    q = select(DevicePermission.permission, DevicePermission.state).where(
        DevicePermission.device_id == device_id
    )
    return {p: st for p, st in (await s.execute(q)).all()}


async def permissions_for_many(s: AsyncSession, device_ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {d: {} for d in device_ids}
    if not device_ids:
        return out
    q = select(
        DevicePermission.device_id, DevicePermission.permission, DevicePermission.state
    ).where(DevicePermission.device_id.in_(device_ids))
    for dev, p, st in (await s.execute(q)).all():
        out[dev][p] = st
    return out


async def report_permissions(
    s: AsyncSession, cat: Catalog, *, account_id: str, device_id: str, states: dict[str, str]
) -> dict[str, str]:
    """Record reported states (all checked first: one bad entry changes nothing)."""
    dev = await get_owned(s, account_id=account_id, device_id=device_id)
    for name, state in states.items():
        perm = cat.permissions.get(name)
        if perm is None:
            raise Problem(
                422,
                "permission.unknown",
                f"Unknown permission {name!r}; known: {', '.join(cat.permissions)}.",
            )
        if state not in perm.states:
            raise Problem(
                422,
                "permission.invalid_state",
                f"{name} can be {', '.join(perm.states)}, not {state!r}.",
            )
    now = clock.utcnow()
    if states:
        # One upsert, in a fixed order: concurrent reports from the same device
        # neither collide on the primary key nor deadlock; the last one wins.
        rows = [
            {"device_id": dev.id, "permission": name, "state": states[name], "reported_at": now}
            for name in sorted(states)
        ]
        stmt = insert_for(s)(DevicePermission).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[DevicePermission.device_id, DevicePermission.permission],
            set_={"state": stmt.excluded.state, "reported_at": stmt.excluded.reported_at},
        )
        await s.execute(stmt)
    await s.commit()
    return await permissions_of(s, dev.id)


# --- watches -------------------------------------------------------------------------------

WATCH_TOKEN_PREFIX = "kares_w"
WATCH_SESSION_DAYS = 3650
PAIR_PREFIX = "kares-watch:pair?"
_IMEI_RE = re.compile(r"^[0-9A-Za-z]{8,20}$")


def _imei_hash(imei: str) -> str:
    return crypto.blind_index(imei.upper(), purpose="watch-imei")


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


async def watch_hello(s: AsyncSession, *, imei: str, model: str | None) -> tuple[Watch, str, str]:
    """A watch introduces itself: a fresh credential and pairing secret (the old
    ones stop working). A paired watch must be unpaired by its family first."""
    if not _IMEI_RE.match(imei):
        raise Problem(422, "watch.invalid_imei", "An IMEI or serial is 8 to 20 letters or digits.")
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
    await s.commit()
    return w, token, secret


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
    from kares.accounts.models import Session
    from kares.families import service as families

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
    device, _ = await touch(
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


async def unpair_watch(s: AsyncSession, *, actor_id: str, watch_id: str) -> None:
    """The family's owner or a guardian (or the wearer) unpairs: the watch's
    credential stops working at once; it must introduce itself again."""
    from kares.accounts.models import Session
    from kares.families import service as families

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
    await s.commit()


async def family_watches(s: AsyncSession, *, actor_id: str, family_id: str) -> list[Watch]:
    from kares.families import service as families

    await families.require_member(s, family_id, actor_id)
    q = select(Watch).where(Watch.family_id == family_id, Watch.status == "paired")
    return list((await s.execute(q.order_by(Watch.paired_at))).scalars())


async def report_status(
    s: AsyncSession, *, account_id: str, device_id: str, battery: int, charging: bool | None
) -> Device:
    dev = await get_owned(s, account_id=account_id, device_id=device_id)
    now = clock.utcnow()
    dev.battery, dev.charging, dev.battery_at, dev.last_seen_at = battery, charging, now, now
    await s.commit()
    return dev
