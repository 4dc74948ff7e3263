"""Reading and checking one calendar object resource with ``icalendar``.

The rules are RFC 4791 section 4.1 (one UID, one component type, no METHOD)
and RFC 5545's own (a VEVENT has a DTSTART). Nothing here parses iCalendar by
hand: ``icalendar`` reads the text, ``recurrence`` expands it.
"""

from __future__ import annotations

from dataclasses import dataclass

import icalendar

from kares.errors import Problem

MAX_OBJECT_BYTES = 512 * 1024
COMPONENTS = ("VEVENT", "VTODO")


TOO_OFTEN = frozenset({"SECONDLY", "MINUTELY"})
# an item asking the people it is for to confirm each occurrence done, with the
# grace after its time (a duration; kares.schedule.reminders tells the guardians)
CONFIRM_PROP = "X-KARES-CONFIRM"


def invalid(detail: str) -> Problem:
    return Problem(400, "calendar.invalid_object", detail)


@dataclass(frozen=True)
class Parsed:
    """A checked resource: its VCALENDAR, UID and component type."""

    calendar: icalendar.Calendar
    uid: str
    component: str


def parse(data: bytes | str) -> Parsed:
    """Read and check one calendar object resource (400 ``calendar.invalid_object``
    saying what is wrong, 413 ``calendar.too_large``)."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_OBJECT_BYTES:
        raise Problem(
            413, "calendar.too_large", f"A calendar object holds at most {MAX_OBJECT_BYTES} bytes."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("An iCalendar object is UTF-8 text.") from None
    try:
        cals = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception as e:  # icalendar raises ValueError and friends on bad text
        raise invalid(f"Not iCalendar: {str(e)[:200]}") from None
    if len(cals) != 1 or cals[0].name != "VCALENDAR":
        raise invalid("Exactly one VCALENDAR is expected.")
    cal = cals[0]
    if "METHOD" in cal:
        raise invalid("A stored calendar object carries no METHOD (RFC 4791 4.1).")
    items = [c for c in cal.subcomponents if c.name != "VTIMEZONE"]
    if not items:
        raise invalid("The VCALENDAR holds no VEVENT or VTODO.")
    kinds = {c.name for c in items}
    if len(kinds) != 1:
        raise invalid("One calendar object holds one component type (RFC 4791 4.1).")
    kind = kinds.pop()
    if kind not in COMPONENTS:
        raise Problem(
            400,
            "calendar.unsupported_component",
            f"Only {' and '.join(COMPONENTS)} are stored, not {kind}.",
        )
    uids = {str(c.get("UID", "")) for c in items}
    if len(uids) != 1 or "" in uids:
        raise invalid("Every component of one calendar object has the same UID (RFC 4791 4.1).")
    uid = uids.pop()
    if len(uid) > 255:
        raise invalid("A UID has at most 255 characters.")
    seen: set[str] = set()
    masters = 0
    for c in items:
        rid = c.get("RECURRENCE-ID")
        if rid is None:
            masters += 1
            key = ""
        else:
            key = rid.to_ical().decode()
        if key in seen:
            raise invalid("Two components of the object have the same RECURRENCE-ID.")
        seen.add(key)
        if kind == "VEVENT" and "DTSTART" not in c:
            raise invalid("A VEVENT has a DTSTART (RFC 5545 3.6.1).")
        rules = c.get("RRULE")
        for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
            if any(str(f).upper() in TOO_OFTEN for f in rule.get("FREQ", [])):
                # a rule every second or minute makes hundreds of thousands of
                # occurrences a year: no family calendar needs one, and phone
                # calendars cannot make them (docs/SCHEDULE.md)
                raise invalid(
                    "A rule repeats at most hourly (FREQ=SECONDLY and MINUTELY are not kept)."
                )
        for prop in ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID"):
            if prop in c:
                try:
                    c.decoded(prop)
                except Exception:
                    raise invalid(f"{prop} is not a date or time.") from None
    if masters > 1:
        raise invalid("One calendar object has one component without RECURRENCE-ID.")
    return Parsed(cal, uid, kind)
