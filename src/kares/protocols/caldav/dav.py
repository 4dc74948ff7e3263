"""The CalDAV server (RFC 4791, RFC 6578 sync, RFC 6764 discovery) as one ASGI app.

Mounted by ``kares.app`` at ``/dav`` and ``/.well-known/caldav``. WebDAV's
methods (PROPFIND, REPORT, PROPPATCH, MKCALENDAR) are not FastAPI's, so this is
a plain ASGI app: it reads the path, authenticates the app password (HTTP
Basic), asks the privacy guard, and answers from the schedule domain through
:mod:`kares.protocols.caldav.store`.

URLs (``{a}``: the account id, ``{cal}``: a calendar id)::

    /.well-known/caldav          -> 301 /dav/
    /dav/                        the root: current-user-principal
    /dav/principals/{a}/         the principal: calendar-home-set
    /dav/calendars/{a}/          the calendar home: every calendar the person sees
    /dav/calendars/{a}/{cal}/    a calendar collection
    /dav/calendars/{a}/{cal}/{n} a calendar object resource (one iCalendar object)
    /dav/feeds/{token}.ics       a read-only subscription (the secret is the URL)

Every refusal is a 4xx with a DAV:error body naming the precondition and a
sentence; nothing a client sends makes a 5xx.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope, Send

from kares.errors import Problem
from kares.identity.auth import Caller
from kares.privacy.guard import admit
from kares.protocols.caldav import feeds, passwords, store
from kares.protocols.caldav.store import Cal, Obj
from kares.protocols.caldav.xml import (
    CAL,
    CS,
    DAV,
    ICAL,
    DavError,
    add_response,
    c,
    children,
    components,
    d,
    href_in,
    multistatus,
    parse,
    privileges,
    reports,
    serialize,
    tag,
)
from kares.runtime import Runtime

log = logging.getLogger("kares.caldav")

ROOT = "/dav/"
WELL_KNOWN = "/.well-known/caldav"
BODY_LIMIT = 4 * 1024 * 1024
REALM = 'Basic realm="Kares CalDAV", charset="UTF-8"'
ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, REPORT, MKCALENDAR"
XML_TYPE = b"application/xml; charset=utf-8"
SYNC_PREFIX = "urn:kares:sync:"
COMPONENTS = ("VEVENT", "VTODO")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")

Headers = list[tuple[bytes, bytes]]


class Request:
    def __init__(self, scope: Scope, body: bytes, rt: Runtime) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.body = body
        self.rt = rt
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def depth(self) -> str:
        return (self.header("depth") or "infinity").strip().lower()


# --- the ASGI app -----------------------------------------------------------------------------


class DavApp:
    """The ASGI app behind /dav and /.well-known/caldav."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        rt: Runtime = scope["app"].state.runtime
        status: int
        headers: Headers
        try:
            body = await _read(receive)
            req = Request(scope, body, rt)
            status, headers, out = await handle(req)
        except DavError as exc:
            status, out = exc.status, exc.body()
            headers = [(b"content-type", XML_TYPE)]
            headers += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
        except Problem as exc:
            err = store.dav_error(exc)
            status, out = err.status, err.body()
            headers = [(b"content-type", XML_TYPE)]
            headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        headers.append((b"content-length", str(len(out)).encode()))
        if scope["method"] == "HEAD":
            out = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    seen = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise DavError(400, "The client went away.")
        chunk = msg.get("body", b"")
        seen += len(chunk)
        if seen > BODY_LIMIT:
            raise DavError(413, f"Request bodies here may be at most {BODY_LIMIT} bytes.")
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _dav_headers() -> Headers:
    return [
        (b"dav", b"1, 3, calendar-access, extended-mkcol"),
        (b"allow", ALLOW.encode()),
    ]


async def handle(req: Request) -> tuple[int, Headers, bytes]:
    path = req.path
    if path.rstrip("/") == WELL_KNOWN:
        return 301, [(b"location", ROOT.encode())], b""
    if req.method == "OPTIONS":
        return 200, _dav_headers(), b""
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts:  # a client that starts at the server's root (PROPFIND /)
        parts = ["dav"]
    if parts[:1] != ["dav"]:
        raise DavError(404, "Not a CalDAV path.")
    if len(parts) == 3 and parts[1] == "feeds" and req.method in ("GET", "HEAD"):
        return await feeds.serve(req.rt, parts[2])
    async with req.rt.db.sessions() as s:
        caller = await _authenticate(s, req)
        return await _route(s, req, caller, parts[1:])


async def _authenticate(s: AsyncSession, req: Request) -> Caller:
    unauth = DavError(
        401,
        "Sign in with your CalDAV user name and app password "
        "(made under Settings, or POST /api/v1/caldav/passwords).",
        headers={"www-authenticate": REALM},
    )
    header = req.header("authorization") or ""
    if header[:6].lower() != "basic ":
        raise unauth
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise unauth from None
    user, sep, secret = raw.partition(":")
    if not sep:
        raise unauth
    found = await passwords.authenticate(s, req.rt, user, secret)
    if found is None:
        raise unauth
    caller = Caller(account=found[0], session=found[1])
    await admit(s, req.rt, caller, *store.GUARD)
    return caller


# --- URLs --------------------------------------------------------------------------------------


def principal_href(aid: str) -> str:
    return f"/dav/principals/{aid}/"


def home_href(aid: str) -> str:
    return f"/dav/calendars/{aid}/"


def cal_href(aid: str, cal_id: str) -> str:
    return f"/dav/calendars/{aid}/{cal_id}/"


def obj_href(aid: str, cal_id: str, name: str) -> str:
    return f"/dav/calendars/{aid}/{cal_id}/{quote(name)}"


def _sync_token(cal: Cal) -> str:
    return f"{SYNC_PREFIX}{cal.id}:{cal.modseq}"


def _http_date(t: datetime) -> str:
    return format_datetime(t.astimezone(UTC), usegmt=True)


# --- routing -----------------------------------------------------------------------------------


async def _route(s: AsyncSession, req: Request, caller: Caller, parts: list[str]) -> Any:
    aid = caller.account.id
    m = req.method
    if not parts:
        return await _propfind_root(req, aid) if m == "PROPFIND" else _not_allowed(req)
    kind, rest = parts[0], parts[1:]
    if kind == "principals" and rest == [aid]:
        return await _propfind_principal(req, aid) if m == "PROPFIND" else _not_allowed(req)
    if kind != "calendars" or not rest or rest[0] != aid:
        raise DavError(404, "No such resource (or not yours).")
    if len(rest) == 1:
        if m == "PROPFIND":
            return await _propfind_home(s, req, caller)
        if m == "REPORT":
            return _multi([])
        return _not_allowed(req)
    cal_id = rest[1]
    if len(rest) == 2:
        if m == "MKCALENDAR" or (m == "MKCOL" and req.body.strip()):
            return await _mkcalendar(s, req, caller, cal_id)
        cal = await _calendar(s, caller, cal_id)
        if m == "PROPFIND":
            return await _propfind_calendar(s, req, caller, cal)
        if m == "REPORT":
            return await _report(s, req, caller, cal)
        if m == "PROPPATCH":
            return await _proppatch(s, req, caller, cal)
        if m == "DELETE":
            await store.delete_calendar(s, caller, cal)
            return 204, [], b""
        if m in ("GET", "HEAD"):
            return await _export(s, caller, cal)
        return _not_allowed(req)
    if len(rest) == 3:
        cal = await _calendar(s, caller, cal_id)
        name = rest[2]
        if m in ("GET", "HEAD"):
            return await _get(s, caller, cal, name)
        if m == "PUT":
            return await _put(s, req, caller, cal, name)
        if m == "DELETE":
            return await _delete(s, req, caller, cal, name)
        if m == "PROPFIND":
            return await _propfind_object(s, req, caller, cal, name)
        return _not_allowed(req)
    raise DavError(404, "No such resource.")


def _not_allowed(req: Request) -> Any:
    raise DavError(405, f"{req.method} is not allowed here.", headers={"allow": ALLOW})


async def _calendar(s: AsyncSession, caller: Caller, cal_id: str) -> Cal:
    cal = await store.calendar(s, caller, cal_id)
    if cal is None:
        raise DavError(404, "No such calendar (or you cannot see it).")
    return cal


def _multi(ms_or_none: Any) -> tuple[int, Headers, bytes]:
    ms = multistatus() if isinstance(ms_or_none, list) else ms_or_none
    return 207, [(b"content-type", XML_TYPE)], serialize(ms)


# --- PROPFIND ----------------------------------------------------------------------------------


class PropRequest:
    """What a PROPFIND (or a REPORT's DAV:prop) asks for."""

    def __init__(self, names: list[str] | None, *, propname: bool = False) -> None:
        self.names = names  # None: allprop
        self.propname = propname

    @classmethod
    def of_propfind(cls, root: Any) -> PropRequest:
        if root is None:
            return cls(None)
        if root.tag != d("propfind"):
            raise DavError(400, "A PROPFIND body is a DAV:propfind element.")
        for child in root:
            if child.tag == d("propname"):
                return cls([], propname=True)
            if child.tag == d("prop"):
                return cls([p.tag for p in child if isinstance(p.tag, str)])
        return cls(None)

    @classmethod
    def of_prop(cls, prop: Any) -> PropRequest:
        if prop is None:
            return cls(None)
        return cls([p.tag for p in prop if isinstance(p.tag, str)])


def _answer(ms: Any, href: str, props: dict[str, Any], want: PropRequest) -> None:
    if want.propname:
        add_response(ms, href, [(n, None) for n in props])
        return
    if want.names is None:
        add_response(ms, href, [(n, v) for n, v in props.items() if n not in _NOT_ALLPROP])
        return
    found = [(n, props[n]) for n in want.names if n in props]
    missing = [n for n in want.names if n not in props]
    add_response(ms, href, found, missing)


# expensive or large properties allprop leaves out (RFC 4791 9.6)
_NOT_ALLPROP = frozenset({c("calendar-data"), d("current-user-privilege-set")})


def _common(aid: str) -> dict[str, Any]:
    return {
        d("current-user-principal"): href_in(principal_href(aid)),
        d("principal-URL"): href_in(principal_href(aid)),
        d("owner"): href_in(principal_href(aid)),
    }


async def _propfind_root(req: Request, aid: str) -> Any:
    want = PropRequest.of_propfind(parse(req.body))
    props = {
        d("resourcetype"): children(d("collection")),
        d("displayname"): "Kares",
        **_common(aid),
        c("calendar-home-set"): href_in(home_href(aid)),
        d("current-user-privilege-set"): privileges("read"),
    }
    ms = multistatus()
    _answer(ms, ROOT, props, want)
    return _multi(ms)


async def _propfind_principal(req: Request, aid: str) -> Any:
    want = PropRequest.of_propfind(parse(req.body))
    props = {
        d("resourcetype"): children(d("collection"), d("principal")),
        d("displayname"): "Me",
        **_common(aid),
        c("calendar-home-set"): href_in(home_href(aid)),
        c("calendar-user-address-set"): href_in(f"urn:uuid:{aid}"),
        d("current-user-privilege-set"): privileges("read"),
        d("principal-collection-set"): href_in("/dav/principals/"),
    }
    ms = multistatus()
    _answer(ms, principal_href(aid), props, want)
    return _multi(ms)


def _home_props(aid: str) -> dict[str, Any]:
    return {
        d("resourcetype"): children(d("collection")),
        d("displayname"): "Calendars",
        **_common(aid),
        c("calendar-home-set"): href_in(home_href(aid)),
        d("current-user-privilege-set"): privileges("read", "bind", "unbind"),
        d("supported-report-set"): reports(d("sync-collection")),
    }


def _cal_props(aid: str, cal: Cal) -> dict[str, Any]:
    token = _sync_token(cal)
    privs = ("read", "write", "write-content", "write-properties", "bind", "unbind")
    props: dict[str, Any] = {
        d("resourcetype"): children(d("collection"), c("calendar")),
        d("displayname"): cal.shown,
        **_common(aid),
        d("sync-token"): token,
        tag(CS, "getctag"): token,
        c("supported-calendar-component-set"): components(*COMPONENTS),
        c("supported-calendar-data"): _calendar_data_types,
        c("calendar-timezone"): None,
        d("current-user-privilege-set"): privileges(*(privs if cal.writable else ("read",))),
        d("supported-report-set"): reports(
            c("calendar-query"), c("calendar-multiget"), c("free-busy-query"), d("sync-collection")
        ),
        c("max-resource-size"): str(store.MAX_RESOURCE_BYTES),
        d("getcontenttype"): "text/calendar; charset=utf-8",
    }
    del props[c("calendar-timezone")]
    if cal.color:
        props[tag(ICAL, "calendar-color")] = cal.color
    if cal.description:
        props[c("calendar-description")] = cal.description
    return props


def _calendar_data_types(el: Any) -> None:
    from lxml import etree

    etree.SubElement(el, c("calendar-data"), **{"content-type": "text/calendar", "version": "2.0"})


def _obj_props(o: Obj) -> dict[str, Any]:
    props: dict[str, Any] = {
        d("resourcetype"): None,
        d("getetag"): o.etag,
        d("getcontenttype"): f"text/calendar; charset=utf-8; component={o.component.lower()}",
        d("getcontentlength"): str(o.size),
        d("getlastmodified"): _http_date(o.updated_at),
    }
    if o.data is not None:
        props[c("calendar-data")] = o.data
    return props


async def _propfind_home(s: AsyncSession, req: Request, caller: Caller) -> Any:
    want = PropRequest.of_propfind(parse(req.body))
    aid = caller.account.id
    ms = multistatus()
    _answer(ms, home_href(aid), _home_props(aid), want)
    if req.depth != "0":
        for cal in await store.calendars(s, caller):
            _answer(ms, cal_href(aid, cal.seg), _cal_props(aid, cal), want)
    return _multi(ms)


async def _propfind_calendar(s: AsyncSession, req: Request, caller: Caller, cal: Cal) -> Any:
    want = PropRequest.of_propfind(parse(req.body))
    aid = caller.account.id
    ms = multistatus()
    _answer(ms, cal_href(aid, cal.seg), _cal_props(aid, cal), want)
    if req.depth != "0":
        data = want.names is not None and c("calendar-data") in want.names
        for o in await store.objects(s, caller, cal, data=data):
            _answer(ms, obj_href(aid, cal.seg, o.name), _obj_props(o), want)
    return _multi(ms)


async def _propfind_object(
    s: AsyncSession, req: Request, caller: Caller, cal: Cal, name: str
) -> Any:
    want = PropRequest.of_propfind(parse(req.body))
    found = await store.objects_named(s, caller, cal, [name], data=False)
    if not found:
        raise DavError(404, "No such calendar object.")
    ms = multistatus()
    _answer(ms, obj_href(caller.account.id, cal.seg, name), _obj_props(found[0]), want)
    return _multi(ms)


# --- REPORT ------------------------------------------------------------------------------------


def _href_name(aid: str, cal: Cal, href: str) -> str | None:
    path = unquote(urlsplit(href).path)
    prefix = cal_href(aid, cal.seg)
    if not path.startswith(prefix):
        return None
    name = path[len(prefix) :]
    return name if name and "/" not in name else None


async def _report(s: AsyncSession, req: Request, caller: Caller, cal: Cal) -> Any:
    root = parse(req.body)
    if root is None:
        raise DavError(400, "A REPORT needs a body.")
    if root.tag == c("calendar-multiget"):
        return await _multiget(s, caller, cal, root)
    if root.tag == c("calendar-query"):
        return await _query(s, caller, cal, root)
    if root.tag == d("sync-collection"):
        return await _sync(s, caller, cal, root)
    if root.tag == c("free-busy-query"):
        tr = root.find(c("time-range"))
        start = _utc(tr.get("start")) if tr is not None else None
        end = _utc(tr.get("end")) if tr is not None else None
        if start is None or end is None or end <= start:
            raise DavError(400, "A free-busy-query names a time-range with a start and an end.")
        text = await store.freebusy(s, cal, start, end)
        return 200, [(b"content-type", b"text/calendar; charset=utf-8")], text.encode("utf-8")
    raise DavError(403, f"This REPORT is not supported here: {root.tag}.", d("supported-report"))


def _wants_data(want: PropRequest) -> bool:
    return want.names is None or c("calendar-data") in want.names


async def _multiget(s: AsyncSession, caller: Caller, cal: Cal, root: Any) -> Any:
    aid = caller.account.id
    want = PropRequest.of_prop(root.find(d("prop")))
    hrefs = [h.text or "" for h in root.findall(d("href"))]
    names = {h: _href_name(aid, cal, h) for h in hrefs}
    wanted = [n for n in names.values() if n is not None]
    found = {
        o.name: o for o in await store.objects_named(s, caller, cal, wanted, data=_wants_data(want))
    }
    ms = multistatus()
    for h, n in names.items():
        o = found.get(n) if n is not None else None
        if o is None:
            add_response(ms, h, status=404)
        else:
            _answer(ms, obj_href(aid, cal.seg, o.name), _obj_props(o), want)
    return _multi(ms)


def _utc(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise DavError(
            400, f"A time-range's start and end are UTC date-times (20260101T000000Z): {value!r}."
        ) from None


class Query:
    """A calendar-query filter: the component, a time range, and what is left to
    check on each object's text (property filters)."""

    def __init__(self) -> None:
        self.component: str | None = None
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.prop_filters: list[Any] = []


def _read_filter(root: Any) -> Query:
    q = Query()
    flt = root.find(c("filter"))
    if flt is None:
        return q
    top = flt.find(c("comp-filter"))
    if top is None:
        return q
    if top.get("name", "").upper() != "VCALENDAR":
        raise DavError(403, "The outer comp-filter is VCALENDAR.", c("valid-filter"))
    inner = top.find(c("comp-filter"))
    if inner is None:
        return q
    name = inner.get("name", "").upper()
    if name not in COMPONENTS:
        q.component = name  # nothing of another kind is stored: an empty answer
        return q
    q.component = name
    if inner.find(c("is-not-defined")) is not None:
        q.component = "-"
        return q
    tr = inner.find(c("time-range"))
    if tr is not None:
        q.start, q.end = _utc(tr.get("start")), _utc(tr.get("end"))
        if q.start is None and q.end is None:
            raise DavError(400, "A time-range needs a start or an end.", c("valid-filter"))
    q.prop_filters = inner.findall(c("prop-filter"))
    if inner.find(c("comp-filter")) is not None:
        # a VALARM filter and the like: checked on the text
        q.prop_filters.extend(inner.findall(c("comp-filter")))
    return q


async def _query(s: AsyncSession, caller: Caller, cal: Cal, root: Any) -> Any:
    aid = caller.account.id
    prop = root.find(d("prop"))
    want = PropRequest.of_prop(prop)
    q = _read_filter(root)
    expand = None
    if prop is not None:
        cd = prop.find(c("calendar-data"))
        if cd is not None:
            ex = cd.find(c("expand"))
            if ex is not None:
                expand = (_utc(ex.get("start")), _utc(ex.get("end")))
    ms = multistatus()
    if q.component is not None and q.component not in COMPONENTS:
        return _multi(ms)
    need_text = _wants_data(want) or bool(q.prop_filters) or expand is not None
    found = await store.objects(
        s, caller, cal, data=need_text, start=q.start, end=q.end, component=q.component
    )
    for o in found:
        if q.prop_filters and not store.matches(o, q.component or "VEVENT", q.prop_filters):
            continue
        if expand is not None and o.data is not None:
            o = store.expanded(o, *expand)
        if not _wants_data(want) and o.data is not None:
            o = Obj(o.name, o.etag, o.updated_at, o.size, o.component)
        _answer(ms, obj_href(aid, cal.seg, o.name), _obj_props(o), want)
    return _multi(ms)


def _token_seq(cal: Cal, token: str) -> int | None:
    """The change position a client's sync-token names; None for a token this
    calendar never gave (a 403 valid-sync-token)."""
    prefix = f"{SYNC_PREFIX}{cal.id}:"
    if not token.startswith(prefix):
        return None
    seq = token[len(prefix) :]
    return int(seq) if seq.isdigit() and len(seq) < 19 and int(seq) <= cal.modseq else None


async def _sync(s: AsyncSession, caller: Caller, cal: Cal, root: Any) -> Any:
    aid = caller.account.id
    want = PropRequest.of_prop(root.find(d("prop")))
    token = (root.findtext(d("sync-token")) or "").strip()
    level = (root.findtext(d("sync-level")) or "1").strip()
    if level not in ("1", "infinite"):
        raise DavError(400, "sync-level is 1 (or infinite).")
    data = _wants_data(want) and want.names is not None
    ms = multistatus()
    if not token:
        objs = await store.objects(s, caller, cal, data=data)
        for o in objs:
            _answer(ms, obj_href(aid, cal.seg, o.name), _obj_props(o), want)
        modseq = cal.modseq
    else:
        since = _token_seq(cal, token)
        changes = None if since is None else await store.changes(s, caller, cal, since, data=data)
        if changes is None:
            raise DavError(
                403,
                "This sync-token is not valid for this calendar (any more): sync from the start.",
                d("valid-sync-token"),
            )
        for o in changes.changed:
            _answer(ms, obj_href(aid, cal.seg, o.name), _obj_props(o), want)
        for n in changes.deleted:
            add_response(ms, obj_href(aid, cal.seg, n), status=404)
        modseq = changes.modseq
    from lxml import etree

    etree.SubElement(ms, d("sync-token")).text = f"{SYNC_PREFIX}{cal.id}:{modseq}"
    return _multi(ms)


# --- GET / PUT / DELETE ------------------------------------------------------------------------


async def _get(s: AsyncSession, caller: Caller, cal: Cal, name: str) -> Any:
    found = await store.objects_named(s, caller, cal, [name], data=True)
    text = found[0].data if found else None
    if text is None:
        raise DavError(404, "No such calendar object.")
    o = found[0]
    headers = [
        (b"content-type", b"text/calendar; charset=utf-8"),
        (b"etag", o.etag.encode()),
        (b"last-modified", _http_date(o.updated_at).encode()),
    ]
    return 200, headers, text.encode("utf-8")


def _etags(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip().removeprefix("W/") for v in value.split(",") if v.strip()]


async def _put(s: AsyncSession, req: Request, caller: Caller, cal: Cal, name: str) -> Any:
    ctype = (req.header("content-type") or "text/calendar").split(";")[0].strip().lower()
    if ctype not in ("text/calendar", "application/octet-stream", "text/plain"):
        raise DavError(
            415, "A calendar object is sent as text/calendar.", c("supported-calendar-data")
        )
    if not cal.writable:
        raise DavError(403, "You may read this calendar but not change it.", d("need-privileges"))
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise DavError(400, "The calendar object is not UTF-8.", c("valid-calendar-data")) from None
    o, created = await store.put(
        s,
        caller,
        cal,
        name,
        text,
        if_match=_etags(req.header("if-match")),
        if_none_match=_etags(req.header("if-none-match")),
    )
    return (201 if created else 204), [(b"etag", o.etag.encode())], b""


async def _delete(s: AsyncSession, req: Request, caller: Caller, cal: Cal, name: str) -> Any:
    if not cal.writable:
        raise DavError(403, "You may read this calendar but not change it.", d("need-privileges"))
    await store.delete(s, caller, cal, name, if_match=_etags(req.header("if-match")))
    return 204, [], b""


async def _export(s: AsyncSession, caller: Caller, cal: Cal) -> Any:
    text = await store.export(s, caller, cal)
    return 200, [(b"content-type", b"text/calendar; charset=utf-8")], text.encode("utf-8")


# --- MKCALENDAR / PROPPATCH --------------------------------------------------------------------


def _settable(prop: Any) -> tuple[dict[str, str | None], list[str]]:
    """Display name / color / description from a DAV:prop; and what cannot be set."""
    values: dict[str, str | None] = {}
    refused: list[str] = []
    for p in prop:
        if not isinstance(p.tag, str):
            continue
        text = (p.text or "").strip()
        if p.tag == d("displayname"):
            values["name"] = text
        elif p.tag == tag(ICAL, "calendar-color"):
            if text and not _COLOR.match(text):
                refused.append(p.tag)
            values["color"] = text or None
        elif p.tag == c("calendar-description"):
            values["description"] = text
        elif p.tag in (c("supported-calendar-component-set"), d("resourcetype")):
            continue  # what we store is fixed; MKCALENDAR may name it
        elif p.tag in (c("calendar-timezone"), tag(ICAL, "calendar-order")):
            continue  # accepted, not kept: the objects carry their zones
        else:
            refused.append(p.tag)
    return values, refused


async def _mkcalendar(s: AsyncSession, req: Request, caller: Caller, cal_id: str) -> Any:
    root = parse(req.body)
    values: dict[str, str | None] = {}
    if root is not None:
        for prop in root.iter(d("prop")):
            got, _ = _settable(prop)
            values.update(got)
    await store.create_calendar(
        s,
        caller,
        cal_id,
        name=values.get("name") or "Calendar",
        color=values.get("color"),
        description=values.get("description"),
    )
    return 201, [(b"location", cal_href(caller.account.id, cal_id).encode())], b""


async def _proppatch(s: AsyncSession, req: Request, caller: Caller, cal: Cal) -> Any:
    root = parse(req.body)
    if root is None or root.tag != d("propertyupdate"):
        raise DavError(400, "A PROPPATCH body is a DAV:propertyupdate element.")
    values: dict[str, str | None] = {}
    refused: list[str] = []
    names: list[str] = []
    for op in root:
        prop = op.find(d("prop"))
        if prop is None:
            continue
        names.extend(p.tag for p in prop if isinstance(p.tag, str))
        got, bad = _settable(prop)
        if op.tag == d("remove"):
            got = {k: None for k in got}
        values.update(got)
        refused.extend(bad)
    ms = multistatus()
    href = cal_href(caller.account.id, cal.seg)
    if refused or not cal.writable:
        status = 403
        ok = [n for n in names if n not in refused]
        add_response(ms, href, [], refused or names, missing_status=403)
        if ok and refused:
            _failed_dependency(ms, ok)
        del status
        return _multi(ms)
    name = values.get("name")
    if name and cal.prefix and name.startswith(cal.prefix):
        values["name"] = name[len(cal.prefix) :]  # the name as the phone shows it
    await store.update_calendar(s, caller, cal, **values)
    add_response(ms, href, [(n, None) for n in names])
    return _multi(ms)


def _failed_dependency(ms: Any, names: Iterable[str]) -> None:
    from lxml import etree

    resp = ms[-1]
    ps = etree.SubElement(resp, d("propstat"))
    prop = etree.SubElement(ps, d("prop"))
    for n in names:
        etree.SubElement(prop, n)
    etree.SubElement(ps, d("status")).text = "HTTP/1.1 424 Failed Dependency"


def mount(app: Any) -> None:
    """Serve CalDAV on the app: /dav/... and the discovery URL (RFC 6764)."""
    from starlette.routing import Mount, Route

    dav = DavApp()
    app.router.routes.append(Route(WELL_KNOWN, dav, include_in_schema=False))
    # clients given only the server's address ask its root who they are
    app.router.routes.append(Route("/", dav, methods=["PROPFIND"], include_in_schema=False))
    app.router.routes.append(Mount("/dav", dav))


__all__ = ["CAL", "CS", "DAV", "DavApp", "mount"]
