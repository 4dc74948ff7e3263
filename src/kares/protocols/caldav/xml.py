"""WebDAV XML: parsing request bodies safely, building 207 multistatus answers.

Request bodies are parsed by lxml with entities never resolved, no DTD loaded,
no network, no huge trees; a body that declares a DOCTYPE (where entity bombs
live) is refused outright. Answers are built as lxml trees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

DAV = "DAV:"
CAL = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
ICAL = "http://apple.com/ns/ical/"
NSMAP = {"d": DAV, "c": CAL, "cs": CS, "ical": ICAL}


def tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def d(name: str) -> str:
    return f"{{DAV:}}{name}"


def c(name: str) -> str:
    return f"{{{CAL}}}{name}"


class DavError(Exception):
    """A refusal: status, a precondition element's tag (RFC 4918 16) if any, and
    a sentence for people."""

    def __init__(
        self,
        status: int,
        message: str,
        precondition: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.precondition = precondition
        self.headers = headers or {}

    def body(self) -> bytes:
        root = etree.Element(d("error"), nsmap=NSMAP)
        if self.precondition:
            etree.SubElement(root, self.precondition)
        msg = etree.SubElement(root, tag("https://kares.app/ns/dav", "message"))
        msg.text = self.message
        return serialize(root)


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def parse(body: bytes) -> Any | None:
    """The root element of a request body (None for an empty body), or a 400."""
    if not body.strip():
        return None
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise DavError(400, "XML with a DOCTYPE or entity declarations is not accepted.")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise DavError(400, f"The request body is not well-formed XML: {exc}") from exc
    return root


def serialize(root: Any) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return out


Filler = Callable[[Any], None]
# a property's value: text, or a function that fills the property's element
Value = str | Filler | None

_STATUS = {
    200: "HTTP/1.1 200 OK",
    403: "HTTP/1.1 403 Forbidden",
    404: "HTTP/1.1 404 Not Found",
    409: "HTTP/1.1 409 Conflict",
    424: "HTTP/1.1 424 Failed Dependency",
}


def multistatus() -> Any:
    return etree.Element(d("multistatus"), nsmap=NSMAP)


def add_response(
    ms: Any,
    href: str,
    found: Iterable[tuple[str, Value]] = (),
    missing: Iterable[str] = (),
    *,
    status: int | None = None,
    missing_status: int = 404,
) -> None:
    """One DAV:response: the found properties in a 200 propstat, the missing ones
    in another (404 unless told); or, with ``status``, a bare status."""
    resp = etree.SubElement(ms, d("response"))
    etree.SubElement(resp, d("href")).text = href
    if status is not None:
        etree.SubElement(resp, d("status")).text = _STATUS.get(status, f"HTTP/1.1 {status}")
        return
    found = list(found)
    missing = list(missing)
    if found or not missing:
        ps = etree.SubElement(resp, d("propstat"))
        prop = etree.SubElement(ps, d("prop"))
        for name, value in found:
            el = etree.SubElement(prop, name)
            if isinstance(value, str):
                el.text = value
            elif value is not None:
                value(el)
        etree.SubElement(ps, d("status")).text = _STATUS[200]
    if missing:
        ps = etree.SubElement(resp, d("propstat"))
        prop = etree.SubElement(ps, d("prop"))
        for name in missing:
            etree.SubElement(prop, name)
        etree.SubElement(ps, d("status")).text = _STATUS[missing_status]


def href_in(href: str) -> Filler:
    def fill(el: Any) -> None:
        etree.SubElement(el, d("href")).text = href

    return fill


def children(*tags: str) -> Filler:
    def fill(el: Any) -> None:
        for t in tags:
            etree.SubElement(el, t)

    return fill


def privileges(*names: str) -> Filler:
    def fill(el: Any) -> None:
        for n in names:
            p = etree.SubElement(el, d("privilege"))
            etree.SubElement(p, d(n) if ":" not in n else n)

    return fill


def components(*names: str) -> Filler:
    def fill(el: Any) -> None:
        for n in names:
            etree.SubElement(el, c("comp"), name=n)

    return fill


def reports(*tags: str) -> Filler:
    def fill(el: Any) -> None:
        for t in tags:
            sr = etree.SubElement(el, d("supported-report"))
            r = etree.SubElement(sr, d("report"))
            etree.SubElement(r, t)

    return fill
