"""The readable privacy policy, rendered from the catalog: HTML, plain text, JSON.

``document(catalog, lang)`` builds the policy (``policy_text``) around the
catalog and the data map; ``html``, ``cookies_html``, ``text`` and
``to_json`` turn it into what the web pages, the API and ``kares policy
render`` serve. ``negotiate`` picks the language from an Accept-Language
header. Languages: ``en`` and ``zh`` (Simplified Chinese).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from kares.privacy.catalog import Catalog
from kares.privacy.datamap import DataMapRow, data_map
from kares.privacy.document import Card, Contents, Document, Items, Paragraph, Section, Table
from kares.privacy.policy_text import LANGS, build

__all__ = [
    "HTML_LANG",
    "LANGS",
    "cookies_html",
    "document",
    "html",
    "negotiate",
    "rendered",
    "text",
    "to_json",
]

TEMPLATES = Path(__file__).with_name("templates")
HTML_LANG = {"en": "en", "zh": "zh-CN"}
LANG_LABELS = {"en": "English", "zh": "简体中文"}
COOKIES_SECTION = "s2"


def document(cat: Catalog, lang: str, rows: list[DataMapRow] | None = None) -> Document:
    """The policy in ``lang`` ('en' or 'zh'); ``rows`` defaults to the models' data map."""
    return build(cat, lang, data_map(cat) if rows is None else rows)


def to_json(doc: Document) -> dict[str, Any]:
    return doc.to_dict()


_rendered: dict[int, tuple[Catalog, dict[tuple[str, str], Any]]] = {}


def rendered(cat: Catalog, lang: str, form: str) -> Any:
    """``html``, ``cookies_html`` or ``json`` of the policy, rendered once per catalog
    and language (the catalog is immutable; the routes are public)."""
    entry = _rendered.get(id(cat))
    if entry is None or entry[0] is not cat:
        if len(_rendered) >= 8:
            _rendered.clear()
        entry = _rendered[id(cat)] = (cat, {})
    cache = entry[1]
    if (lang, form) not in cache:
        make: dict[str, Callable[[Document], Any]] = {
            "html": html,
            "cookies_html": cookies_html,
            "json": to_json,
        }
        cache[(lang, form)] = make[form](document(cat, lang))
    return cache[(lang, form)]


# --- language negotiation ---------------------------------------------------------------


def negotiate(accept_language: str | None, default: str = "en") -> str:
    """The best of our languages for an Accept-Language header: ``zh*`` -> zh,
    ``en*`` -> en, by quality; anything else (or nothing) -> ``default``."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0 or q > 1:
            continue
        primary = tag.split("-", 1)[0]
        if primary in LANGS:
            ranked.append((-q, i, primary))
        elif tag == "*":
            ranked.append((-q, i, default))
    if not ranked:
        return default
    return min(ranked)[2]


# --- HTML -------------------------------------------------------------------------------

_LINK = re.compile(
    r"(?P<url>https?://[^\s<>\"'（），。；]+)"
    r"|(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
    r"|(?P<path>/(?:api/v1/)?privacy/[a-z-]+)"
)
_TRAILING = ".,;:)"


def linkify(value: str) -> Markup:
    """Escape ``value`` and turn web addresses, e-mail addresses and our own
    privacy paths into links."""
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(value):
        target = m.group(0)
        end = m.end()
        if m.group("url"):
            while target and target[-1] in _TRAILING:
                target = target[:-1]
                end -= 1
            href = target
        elif m.group("email"):
            href = "mailto:" + target
        else:
            href = target
        out.append(str(escape(value[pos : m.start()])))
        out.append(f'<a href="{escape(href)}">{escape(target)}</a>')
        pos = end
    out.append(str(escape(value[pos:])))
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["linkify"] = linkify
    env.tests["paragraph"] = lambda b: isinstance(b, Paragraph)
    env.tests["items"] = lambda b: isinstance(b, Items)
    env.tests["table"] = lambda b: isinstance(b, Table)
    env.tests["card"] = lambda b: isinstance(b, Card)
    env.tests["contents"] = lambda b: isinstance(b, Contents)
    env.tests["text"] = lambda v: isinstance(v, str)
    return env


def _page_context(doc: Document) -> dict[str, Any]:
    return {
        "doc": doc,
        "html_lang": HTML_LANG[doc.lang],
        "languages": [(code, LANG_LABELS[code]) for code in LANGS],
    }


def html(doc: Document) -> str:
    """The whole policy as an HTML page."""
    return _env().get_template("policy.html").render(**_page_context(doc))


def cookies_html(doc: Document) -> str:
    """The cookie page: section 2 of the policy on its own."""
    section = doc.section(COOKIES_SECTION)
    return (
        _env()
        .get_template("cookies.html")
        .render(**_page_context(doc), section=section, policy_title=doc.title)
    )


# --- plain text -------------------------------------------------------------------------

WIDTH = 78
_CJK = "\u2e80-\u9fff\u3000-\u303f\uf900-\ufaff\uff00-\uffef"
_TOKENS = re.compile(rf"\s+|[{_CJK}]|[^\s{_CJK}]+")
_NO_LINE_START = set("，。；：、）」』》！？,.;:)!?")
_NO_LINE_END = set("（「『《")


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in s)


def wrap(value: str, width: int = WIDTH, indent: str = "", hanging: str | None = None) -> str:
    """Wrap by display width: Latin text breaks at spaces, Chinese between characters
    (never before closing punctuation, never after opening punctuation)."""
    hanging = indent if hanging is None else hanging
    lines: list[str] = []
    line, used, space = indent, _width(indent), False
    fresh = True
    opening = ""
    for tok in _TOKENS.findall(value):
        if tok.isspace():
            space = not fresh
            continue
        if tok in _NO_LINE_END:
            opening += tok  # glued to what follows it
            continue
        tok, opening = opening + tok, ""
        w = _width(tok)
        gap = 1 if space else 0
        if not fresh and used + gap + w > width and tok[0] not in _NO_LINE_START:
            lines.append(line)
            line, used, gap = hanging, _width(hanging), 0
        line += " " * gap + tok
        used += gap + w
        fresh, space = False, False
    line += opening
    lines.append(line)
    return "\n".join(lines)


def _underline(heading: str, ch: str) -> str:
    lines = wrap(heading).split("\n")
    return "\n".join(lines) + "\n" + ch * max(_width(line) for line in lines)


def _text_block(block: Any, out: list[str], lang: str) -> None:
    colon = "：" if lang == "zh" else ": "
    if isinstance(block, Paragraph):
        out.append(wrap(block.text))
    elif isinstance(block, Items):
        lines = []
        for i, item in enumerate(block.items, 1):
            bullet = f"  {i}. " if block.ordered else "  - "
            lines.append(wrap(item, indent=bullet, hanging=" " * len(bullet)))
        out.append("\n".join(lines))
    elif isinstance(block, Contents):
        out.append(
            "\n".join(
                wrap(heading, indent="  ", hanging="     ") for _sid, heading in block.entries
            )
        )
    elif isinstance(block, Table):
        records = []
        for row in block.rows:
            lines = [wrap(row[0], indent="  * ", hanging="    ")]
            for col, cell in zip(block.columns[1:], row[1:], strict=True):
                shown = cell if cell else "—"
                lines.append(wrap(f"{col}{colon}{shown}", indent="      ", hanging="        "))
            records.append("\n".join(lines))
        out.append("\n\n".join(records))
    elif isinstance(block, Card):
        lines = [f"  [{block.title}]"]
        for label, value in block.fields:
            if isinstance(value, str):
                lines.append(wrap(f"{label}{colon}{value}", indent="    ", hanging="      "))
            else:
                lines.append(f"    {label}{colon.rstrip()}")
                lines += [wrap(v, indent="      - ", hanging="        ") for v in value]
        out.append("\n".join(lines))


def _text_section(section: Section, depth: int, out: list[str], lang: str) -> None:
    out.append(_underline(section.heading, "=" if depth == 0 else "-"))
    for block in section.blocks:
        _text_block(block, out, lang)
    for sub in section.sections:
        _text_section(sub, depth + 1, out, lang)


def text(doc: Document) -> str:
    """The whole policy as plain text, wrapped at 78 columns."""
    out = [_underline(doc.title, "#"), "\n".join(doc.meta)]
    for section in doc.sections:
        _text_section(section, 0, out, doc.lang)
    return "\n\n".join(out) + "\n"
