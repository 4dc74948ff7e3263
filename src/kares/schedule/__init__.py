"""The schedule domain: personal and family calendars holding CalDAV calendar
object resources (events and to-dos), recurrence, the JSON API (docs/SCHEDULE.md)."""
