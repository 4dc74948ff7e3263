"""SOS actions: raise, answer, list; the reminders and SMS run as jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from kares import clock, events, jobs
from kares.db import insert_for, new_id
from kares.devices import service as devices
from kares.errors import Problem
from kares.families import service as families
from kares.identity.models import Account
from kares.location import service as location
from kares.notify import service as notify
from kares.notify.models import Notification
from kares.privacy import service as privacy
from kares.privacy.catalog import Catalog
from kares.sos.models import SosAlert, SosRecipient

SMS_JOB = "sos.sms"
REMIND_JOB = "sos.remind"
REMIND_EVERY_SECONDS = 120
REMIND_AT_MOST = 10

# a device's open alert takes its new alarms while its reminders run; after that a
# new alarm is a new emergency
LIVE_FOR = timedelta(seconds=REMIND_EVERY_SECONDS * REMIND_AT_MOST)

# an SOS without a position uses the last fix if it is at most this old
LAST_FIX_MAX_AGE_MS = 15 * 60 * 1000


async def recipients_for(s: AsyncSession, account: Account) -> list[str]:
    """Every guardian of the person; someone with no guardian is looked after by
    the other members of their families."""
    ids = [a.id for a in await families.guardians_of(s, account.id)]
    if not ids:
        for fam in await families.families_of(s, account.id):
            for m, acc in await families.members_of(s, fam.family.id):
                if acc.id != account.id and m.role != "dependant":
                    ids.append(acc.id)
    return list(dict.fromkeys(ids))


def _who(account: Account) -> str:
    return account.name or "A family member"


async def raise_alert(s: AsyncSession, cat: Catalog, **kw: Any) -> tuple[SosAlert, bool]:
    """Raise an alert and tell every guardian: one action, committed here. Returns
    the alert and whether it was opened now (False: added to the open one)."""
    alert, opened = await _open(s, cat, **kw)
    await s.commit()
    return alert, opened


async def open_alert(s: AsyncSession, cat: Catalog, **kw: Any) -> SosAlert:
    """An alert, every guardian told (inbox and pushes now, SMS and reminders as
    jobs), in the caller's transaction; see ``_open``."""
    alert, _ = await _open(s, cat, **kw)
    return alert


async def _open(
    s: AsyncSession,
    cat: Catalog,
    *,
    account: Account,
    device_id: str | None,
    degraded: dict[str, str],
    lat: float | None,
    lon: float | None,
    accuracy_m: float | None,
    battery: int | None,
    note: str | None,
    source_key: str | None = None,
    alarm_at: datetime | None = None,
    late: bool = False,
) -> tuple[SosAlert, bool]:
    """The alert and whether it was opened now.

    A device's alarm (``source_key``: the device's own id of it) is raised once:
    raising the same key again returns the first alert. A device has one live
    alert at a time (``open_device``, unique), and so has a person for the SOS
    they raise through the API, the app's button (``open_person``, unique): a new
    alarm or SOS while one is open and live is added to it (``repeats``) and
    tells nobody again. ``late``: the alarm is too old to be an emergency now; it
    is recorded with its own time (``alarm_at``) for the guardians to see, and
    nobody is alerted."""
    if source_key is not None:
        same = await _by_key(s, account.id, source_key)
        if same is not None:
            return same, False
    precision = "precise"
    if lat is not None and lon is not None and "location.precise" in degraded:
        lat, lon = privacy.coarsen(cat, "location.approximate", lat, lon)
        accuracy_m, precision = None, "approximate"
    now = clock.utcnow()
    if (lat is None or lon is None) and not late:
        lat = lon = accuracy_m = None
        precision = "none"
        # no position in the alert: the person's last known one, if it is recent
        last = (await location.last_locations(s, [account.id])).get(account.id)
        if last is not None and now.timestamp() * 1000 - last.recorded_ms <= LAST_FIX_MAX_AGE_MS:
            lat, lon, accuracy_m = last.lat, last.lon, last.accuracy_m
            precision = "precise" if last.precise else "approximate"
            if precision == "precise" and "location.precise" in degraded:
                lat, lon = privacy.coarsen(cat, "location.approximate", lat, lon)
                accuracy_m, precision = None, "approximate"
    elif lat is None or lon is None:
        lat = lon = accuracy_m = None
        precision = "none"
    if device_id is not None and battery is not None and not late:
        await devices.note_battery(s, device_id, battery)
    values: dict[str, Any] = {
        "account_id": account.id,
        "device_id": device_id,
        "lat": lat,
        "lon": lon,
        "accuracy_m": accuracy_m,
        "precision": precision,
        "battery": battery,
        "note": note,
        "source_key": source_key,
        "alarm_at": alarm_at,
        "status": "late" if late else "open",
        "reminders_sent": 0,
        "repeats": 0,
        "created_at": now,
    }
    recipients = await recipients_for(s, account)
    if late:
        alert = SosAlert(**values)
        s.add(alert)
        await s.flush()
    else:
        # a device's alarm is one per device; an SOS through the API, one per person
        column, key = (
            (SosAlert.open_device, device_id)
            if source_key is not None and device_id is not None
            else (SosAlert.open_person, account.id)
        )
        got = await _open_once(s, column, key, source_key, values, now)
        if got is None:
            raise RuntimeError("an SOS alert could be neither opened nor found")
        alert, opened = got
        if not opened:
            return alert, False
    s.add_all(SosRecipient(alert_id=alert.id, account_id=r) for r in recipients)
    if late:
        return alert, True
    await _tell(s, alert, account, recipients, reminder=False)
    await events.emit(s, "sos.raised", account_id=account.id)
    for r in recipients:
        jobs.enqueue(s, SMS_JOB, {"alert_id": alert.id, "to": r}, account_id=r)
    jobs.enqueue(
        s,
        REMIND_JOB,
        {"alert_id": alert.id},
        account_id=account.id,
        run_at=now + timedelta(seconds=REMIND_EVERY_SECONDS),
    )
    return alert, True


async def _by_key(s: AsyncSession, account_id: str, source_key: str) -> SosAlert | None:
    q = select(SosAlert).where(SosAlert.account_id == account_id, SosAlert.source_key == source_key)
    return (await s.execute(q)).scalar_one_or_none()


async def _open_once(
    s: AsyncSession,
    column: InstrumentedAttribute[str | None],
    key: str,
    source_key: str | None,
    values: dict[str, Any],
    now: datetime,
) -> tuple[SosAlert, bool] | None:
    """Open the alert held by ``column`` = ``key`` (``open_device``: a device's
    alarm; ``open_person``: a person's SOS through the API), or add this one to
    the alert open there: (the alert, whether it was opened now). The database
    decides: the insert takes the unique open column or does nothing, in one
    statement, so alarms that arrive at once (even on two connections, or two
    servers) open one alert between them."""
    # an alert nobody answered within its reminders no longer takes new alarms:
    # a new one after that is a new emergency
    await s.execute(
        update(SosAlert)
        .where(column == key, SosAlert.created_at < now - LIVE_FOR)
        .values({column.key: None})
        .execution_options(synchronize_session=False)
    )
    for _ in range(3):
        alert_id = new_id()
        inserted = (
            await s.execute(
                insert_for(s)(SosAlert)
                .values(id=alert_id, **{column.key: key}, **values)
                .on_conflict_do_nothing()
                .returning(SosAlert.id)
            )
        ).scalar_one_or_none()
        if inserted is not None:
            alert = await s.get(SosAlert, alert_id)
            assert alert is not None
            return alert, True
        # the same alarm raised at the same moment (a resend on another connection)
        if source_key is not None:
            same = await _by_key(s, values["account_id"], source_key)
            if same is not None:
                return same, False
        added = (
            await s.execute(
                update(SosAlert)
                .where(column == key)
                .values(repeats=SosAlert.repeats + 1, repeated_at=values["alarm_at"] or now)
                .returning(SosAlert.id)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one_or_none()
        if added is not None:
            alert = await s.get(SosAlert, added, populate_existing=True)
            assert alert is not None
            return alert, False
        # answered between the two statements: try to open it again
    return None


async def _tell(
    s: AsyncSession, alert: SosAlert, person: Account, recipients: list[str], *, reminder: bool
) -> None:
    """Tell the recipients: the notice references the alert and stores no
    position; the inbox renders where it was raised when it is read (``_shown``)."""
    await notify.send(
        s,
        account_ids=recipients,
        category="sos",
        title=("Still waiting: " if reminder else "") + f"SOS from {_who(person)}",
        body=f"{_who(person)} asked for help. Open Kares to respond.",
        data={
            notify.RENDER: "sos",
            "sos_id": alert.id,
            "account_id": person.id,
            "precision": alert.precision,
            "battery": alert.battery,
        },
    )


@notify.renderer("sos")
async def _shown(s: AsyncSession, note: Notification) -> notify.Shown | None:
    """An SOS notice as its recipient reads it: where, from the alert itself."""
    alert = await s.get(SosAlert, str(note.data.get("sos_id", "")))
    if alert is None:
        return None
    person = await s.get(Account, alert.account_id)
    who = _who(person) if person is not None else "A family member"
    where = ""
    if alert.lat is not None and alert.lon is not None:
        where = f" near {alert.lat:.5f}, {alert.lon:.5f}"
    data = {
        **note.data,
        "lat": alert.lat,
        "lon": alert.lon,
        "precision": alert.precision,
        "battery": alert.battery,
    }
    return notify.Shown(note.title, f"{who} asked for help{where}. Open Kares to respond.", data)


async def recipients_of(s: AsyncSession, alert_id: str) -> list[str]:
    q = select(SosRecipient.account_id).where(SosRecipient.alert_id == alert_id)
    return list((await s.execute(q)).scalars())


async def visible_alert(s: AsyncSession, *, account_id: str, alert_id: str) -> SosAlert:
    """The alert if the caller raised it or was told of it; 404 otherwise."""
    alert = await s.get(SosAlert, alert_id)
    if alert is None or (
        alert.account_id != account_id and account_id not in await recipients_of(s, alert_id)
    ):
        raise Problem(404, "sos.not_found", "No such SOS alert.")
    return alert


async def acknowledge(s: AsyncSession, *, responder: Account, alert_id: str) -> SosAlert:
    alert = await visible_alert(s, account_id=responder.id, alert_id=alert_id)
    if alert.account_id == responder.id:
        raise Problem(
            403, "sos.not_recipient", "A guardian answers an SOS; the person who raised it cannot."
        )
    if alert.status == "open":
        alert.status = "acknowledged"
        alert.open_device = None
        alert.open_person = None
        alert.acknowledged_by = responder.id
        alert.acknowledged_at = clock.utcnow()
        person = await s.get(Account, alert.account_id)
        others = [r for r in await recipients_of(s, alert.id) if r != responder.id]
        await notify.send(
            s,
            account_ids=[alert.account_id, *others],
            category="sos",
            title=f"{_who(responder)} is responding",
            body=f"{_who(responder)} answered the SOS from "
            f"{_who(person) if person else 'a member'}.",
            data={"sos_id": alert.id, "acknowledged_by": responder.id},
        )
        await events.emit(s, "sos.answered", account_id=alert.account_id, responder_id=responder.id)
        await s.commit()
    return alert


async def alerts_for(s: AsyncSession, *, account_id: str, status: str | None) -> list[SosAlert]:
    told = select(SosRecipient.alert_id).where(SosRecipient.account_id == account_id)
    q = select(SosAlert).where((SosAlert.account_id == account_id) | SosAlert.id.in_(told))
    if status is not None:
        q = q.where(SosAlert.status == status)
    return list((await s.execute(q.order_by(SosAlert.created_at.desc()).limit(100))).scalars())


async def remind(s: AsyncSession, *, alert_id: str) -> None:
    """While nobody answered, tell the guardians again (a bounded number of times)."""
    alert = await s.get(SosAlert, alert_id)
    if alert is None or alert.status != "open" or alert.reminders_sent >= REMIND_AT_MOST:
        return
    person = await s.get(Account, alert.account_id)
    if person is None:
        return
    alert.reminders_sent += 1
    await _tell(s, alert, person, await recipients_of(s, alert.id), reminder=True)
    if alert.reminders_sent < REMIND_AT_MOST:
        jobs.enqueue(
            s,
            REMIND_JOB,
            {"alert_id": alert.id},
            account_id=alert.account_id,
            run_at=clock.utcnow() + timedelta(seconds=REMIND_EVERY_SECONDS),
        )
    await s.commit()
