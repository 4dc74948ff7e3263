"""Device actions: recognise a device at sign-in, record its permission states."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.db import insert_for
from kares.devices.models import Device, DevicePermission
from kares.errors import Problem
from kares.identity import service as identity
from kares.privacy import ports
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
        # the guard's decisions read these states: ones made before are not used again
        await identity.bump_privacy_version(s, dev.account_id)
    await s.commit()
    return await permissions_of(s, dev.id)


async def report_status(
    s: AsyncSession, *, account_id: str, device_id: str, battery: int, charging: bool | None
) -> Device:
    dev = await get_owned(s, account_id=account_id, device_id=device_id)
    now = clock.utcnow()
    dev.battery, dev.charging, dev.battery_at, dev.last_seen_at = battery, charging, now, now
    await s.commit()
    return dev


async def note_battery(s: AsyncSession, device_id: str, battery: int) -> None:
    """A battery level a device reported along with something else (a watch's
    position or alarm), written in that action's transaction."""
    dev = await s.get(Device, device_id)
    if dev is not None and 0 <= battery <= 100:
        now = clock.utcnow()
        dev.battery, dev.battery_at, dev.last_seen_at = battery, now, now


# the privacy core reads what a device reports through this
ports.register_permissions(permissions_of)
