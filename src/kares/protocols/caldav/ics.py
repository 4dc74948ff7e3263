"""iCalendar files coming in: one file of many events split into calendar object
resources (one UID each, with the time zones it uses). ``icalendar`` reads and
writes every line; the way out is the schedule domain's ``calendar_ics``."""

from __future__ import annotations

import icalendar

from kares.errors import Problem

PRODID = "-//Kares//Schedule//EN"
MAX_IMPORT_OBJECTS = 20_000


def _bad(detail: str) -> Problem:
    return Problem(400, "calendar.invalid_file", detail)


def _tzids(component: icalendar.cal.Component) -> set[str]:
    out: set[str] = set()
    for sub in component.walk():
        for value in sub.property_items(recursive=False, sorted=False):
            params = getattr(value[1], "params", None)
            if params is not None and "TZID" in params:
                out.add(str(params["TZID"]))
    return out


def split(data: bytes) -> list[tuple[str, str]]:
    """The resources of an iCalendar file: (UID, the text of one VCALENDAR holding
    that UID's components and the VTIMEZONEs they name), in file order. A clear
    400 for a file that is not iCalendar or holds nothing to import."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _bad("An iCalendar file is UTF-8 text.") from None
    try:
        cals = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception as e:  # icalendar raises ValueError and friends on bad text
        raise _bad(f"Not an iCalendar file: {str(e)[:200]}") from None
    if not cals or any(c.name != "VCALENDAR" for c in cals):
        raise _bad("An iCalendar file holds VCALENDAR objects.")
    zones: dict[str, icalendar.cal.Component] = {}
    by_uid: dict[str, list[icalendar.cal.Component]] = {}
    for cal in cals:
        for comp in cal.subcomponents:
            if comp.name == "VTIMEZONE":
                zones[str(comp.get("TZID", ""))] = comp
            elif comp.name in ("VEVENT", "VTODO"):
                uid = str(comp.get("UID", "")).strip()
                if not uid:
                    raise _bad(f"A {comp.name} without a UID (RFC 5545 requires one).")
                by_uid.setdefault(uid, []).append(comp)
    if not by_uid:
        raise _bad("The file holds no VEVENT or VTODO.")
    if len(by_uid) > MAX_IMPORT_OBJECTS:
        raise _bad(f"At most {MAX_IMPORT_OBJECTS} events or to-dos per import.")
    out = []
    for uid, comps in by_uid.items():
        one = icalendar.Calendar()
        one.add("VERSION", "2.0")
        one.add("PRODID", PRODID)
        used: set[str] = set()
        for comp in comps:
            used |= _tzids(comp)
        for tzid in sorted(used):
            if tzid in zones:
                one.add_component(zones[tzid])
        for comp in comps:
            one.add_component(comp)
        out.append((uid, one.to_ical().decode("utf-8")))
    return out
