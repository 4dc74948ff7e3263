"""The privacy catalog: the policy as data, loaded and checked at start-up.

``load(path)`` parses ``catalog.yaml`` into typed models and checks every
cross-reference (a function naming an unknown category, a feature needing an
unknown permission, ...). Any problem is a ``CatalogError`` that names the
bad entry, e.g. ``functions.health.features.steps: unknown permission
'motion'``.

The catalog also defines what a consent *allows* (``terms``), so a revision
can be compared with the version a user agreed to: ``covers(old, new)`` is
true when the new terms take nothing more than the old ones did.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

if TYPE_CHECKING:
    from kares.runtime import Runtime

DEFAULT_PATH = Path(__file__).with_name("catalog.yaml")


class CatalogError(ValueError):
    """The catalog is invalid; the message names the entry."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Model):
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


class Retention(_Model):
    days: int | None = Field(default=None, ge=1)
    kept: Literal["account"] | None = None
    then: Literal["delete", "anonymise"] = "delete"

    @model_validator(mode="after")
    def _one(self) -> Retention:
        if (self.days is None) == (self.kept is None):
            raise ValueError("give exactly one of 'days' or 'kept: account'")
        return self

    @property
    def limit(self) -> float:
        """Days, or infinity for 'as long as the account exists' (for comparisons)."""
        return math.inf if self.days is None else float(self.days)


class Category(_Model):
    name: Text
    fides: str = Field(pattern=r"^user(\.[a-z_]+)+$")
    sensitive: bool
    retention: Retention
    fallback: str | None = None
    rounding_decimals: int | None = Field(default=None, ge=0, le=6)


class LegalBasis(_Model):
    name: Text
    article: str
    needs_consent: bool


class Permission(_Model):
    name: Text
    business: Text
    method: Text
    closable: bool | None
    states: list[str] = Field(default_factory=lambda: ["granted", "denied"])
    # state -> sensitive categories only their fallback may be used for
    degrade: dict[str, list[str]] = Field(default_factory=dict)


class Feature(_Model):
    # what the readable policy calls this part of its function (never its key)
    name: Text
    categories: list[str]
    permissions: list[str] = Field(default_factory=list)
    any_permission: list[str] = Field(default_factory=list)
    public: bool = False
    minor_allowed: bool = False


class Function(_Model):
    kind: Literal["basic", "extended"]
    section: str
    name: Text
    purpose: Text
    legal_basis: str
    categories: list[str]
    features: dict[str, Feature]
    public: bool = False
    # needs no consent of its own (its legal basis is not consent, and a user
    # who withdrew consent must still be able to manage the account)
    consent_exempt: bool = False
    # usable by a child under 14 before a guardian consented
    minor_allowed: bool = False


class Cookie(_Model):
    kind: Literal["strictly_necessary", "preferences", "analytics"]
    purpose: Text
    expires_days: int = Field(ge=0)
    http_only: bool
    first_party: bool
    third_party: str | None = None


class Sdk(_Model):
    name: str
    company: Text
    purpose: Text
    data: Text
    permissions: list[str]
    privacy_url: str


class ThirdParty(_Model):
    name: Text
    relation: Literal["sharing", "entrusted"]
    purpose: Text
    categories: list[str]


class PolicyMeta(_Model):
    version: str = Field(pattern=r"^[0-9A-Za-z.\-]+$")
    date: dt.date
    effective: dt.date
    significant: bool
    operator: Text
    contact_email: str
    response_working_days: int = Field(ge=1)
    changes: list[Text]


_MISSING = object()
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class Catalog(_Model):
    policy: PolicyMeta
    legal_bases: dict[str, LegalBasis]
    categories: dict[str, Category]
    permissions: dict[str, Permission]
    functions: dict[str, Function]
    cookies: dict[str, Cookie]
    sdks: dict[str, Sdk]
    third_parties: dict[str, ThirdParty]
    # what is derived from the catalog, worked out once: the catalog never changes
    # once loaded, and the guard asks on every request (results are shared: read them)
    _memo: dict[str, Any] = PrivateAttr(default_factory=dict)

    def _once(self, key: str, make: Any) -> Any:
        found = self._memo.get(key, _MISSING)
        if found is _MISSING:
            found = self._memo[key] = make()
        return found

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        errors: list[str] = []

        def need(where: str, kind: str, key: str, pool: dict[str, Any]) -> None:
            if key not in pool:
                errors.append(f"{where}: unknown {kind} {key!r}")

        for section in ("categories", "functions", "permissions", "legal_bases"):
            for key in getattr(self, section):
                if not KEY_RE.match(key):
                    errors.append(f"{section}.{key}: keys are lower-case dotted words")
        for ckey, cdef in self.categories.items():
            if cdef.fallback is not None:
                need(f"categories.{ckey}.fallback", "category", cdef.fallback, self.categories)
                fb = self.categories.get(cdef.fallback)
                if fb is not None and fb.sensitive:
                    errors.append(f"categories.{ckey}.fallback: {cdef.fallback!r} is sensitive")
        for pkey, pdef in self.permissions.items():
            if "granted" not in pdef.states or "denied" not in pdef.states:
                errors.append(f"permissions.{pkey}.states: must include granted and denied")
            for st, cats in pdef.degrade.items():
                if st not in pdef.states:
                    errors.append(f"permissions.{pkey}.degrade: unknown state {st!r}")
                for c in cats:
                    need(f"permissions.{pkey}.degrade", "category", c, self.categories)
                    if c in self.categories and self.categories[c].fallback is None:
                        errors.append(f"permissions.{pkey}.degrade: {c!r} has no fallback")
        for fkey, f in self.functions.items():
            where = f"functions.{fkey}"
            need(f"{where}.legal_basis", "legal basis", f.legal_basis, self.legal_bases)
            for c in f.categories:
                need(f"{where}.categories", "category", c, self.categories)
            if (
                f.kind == "extended"
                and not self.legal_bases.get(
                    f.legal_basis,
                    LegalBasis(name=Text(en="-", zh="-"), article="", needs_consent=True),
                ).needs_consent
            ):
                errors.append(f"{where}.legal_basis: an extended function needs consent")
            for name, feat in f.features.items():
                fw = f"{where}.features.{name}"
                if not KEY_RE.match(name):
                    errors.append(f"{fw}: feature names are lower-case words")
                for c in feat.categories:
                    if c not in f.categories:
                        errors.append(f"{fw}: category {c!r} is not one of the function's")
                for p in (*feat.permissions, *feat.any_permission):
                    need(fw, "permission", p, self.permissions)
                if feat.public and not f.public:
                    errors.append(f"{fw}: a public feature needs a public function")
            if f.kind == "extended" and f.consent_exempt:
                errors.append(f"{where}: an extended function cannot be consent_exempt")
        for skey, sdk in self.sdks.items():
            for p in sdk.permissions:
                need(f"sdks.{skey}.permissions", "permission", p, self.permissions)
        for tkey, tp in self.third_parties.items():
            for c in tp.categories:
                need(f"third_parties.{tkey}.categories", "category", c, self.categories)
        for ckey, cookie in self.cookies.items():
            if cookie.third_party is not None:
                need(
                    f"cookies.{ckey}.third_party",
                    "third party",
                    cookie.third_party,
                    self.third_parties,
                )
            if not cookie.first_party and cookie.third_party is None:
                errors.append(f"cookies.{ckey}: a third-party cookie names its third party")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # --- look-ups ---------------------------------------------------------------

    def function(self, key: str) -> Function:
        return self.functions[key]

    def feature(self, function: str, feature: str | None) -> Feature:
        f = self.functions[function]
        if feature is None:
            return Feature(
                name=f.name,
                categories=list(f.categories),
                public=f.public,
                minor_allowed=f.minor_allowed,
            )
        return f.features[feature]

    def functions_using(self, category: str) -> list[str]:
        return sorted(k for k, f in self.functions.items() if category in f.categories)

    def third_parties_receiving(self, categories: list[str]) -> list[str]:
        cats = set(categories)
        return sorted(k for k, t in self.third_parties.items() if cats & set(t.categories))

    def needs_separate_consent(self, category: str) -> bool:
        return self.categories[category].sensitive

    def basis_for(self, function: str, category: str) -> str:
        if self.categories[category].sensitive:
            return "separate_consent"
        return self.functions[function].legal_basis

    # --- what a consent allows ----------------------------------------------------

    def function_terms(self, key: str) -> dict[str, Any]:
        f = self.functions[key]
        return {
            "kind": f.kind,
            "purpose": f.purpose.en,
            "legal_basis": f.legal_basis,
            "categories": sorted(f.categories),
            "retention": {c: self.categories[c].retention.limit for c in f.categories},
            "third_parties": self.third_parties_receiving(f.categories),
        }

    def category_terms(self, key: str) -> dict[str, Any]:
        return {
            "categories": [key],
            "retention": {key: self.categories[key].retention.limit},
            "functions": self.functions_using(key),
            "third_parties": self.third_parties_receiving([key]),
        }

    def third_party_terms(self, key: str) -> dict[str, Any]:
        tp = self.third_parties[key]
        return {"purpose": tp.purpose.en, "categories": sorted(tp.categories)}

    def terms(self) -> dict[str, dict[str, Any]]:
        """Everything a consent can be given to, keyed ``function:x`` / ``category:x``
        / ``third_party:x``; stored with each published version."""
        terms: dict[str, dict[str, Any]] = self._once("terms", self._terms)
        return terms

    def _terms(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for k in self.functions:
            out[f"function:{k}"] = self.function_terms(k)
        for k in self.categories:
            out[f"category:{k}"] = self.category_terms(k)
        for k in self.third_parties:
            out[f"third_party:{k}"] = self.third_party_terms(k)
        return _jsonable(out)

    def digest(self) -> str:
        def make() -> str:
            blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
            return hashlib.sha256(blob.encode()).hexdigest()

        digest: str = self._once("digest", make)
        return digest

    def degradable(self) -> frozenset[str]:
        """Categories some permission state coarsens (precise -> approximate location)."""
        found: frozenset[str] = self._once(
            "degradable",
            lambda: frozenset(
                c for p in self.permissions.values() for cs in p.degrade.values() for c in cs
            ),
        )
        return found


def _jsonable(terms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Infinity is not JSON: 'as long as the account exists' is stored as -1."""
    out: dict[str, dict[str, Any]] = {}
    for key, t in terms.items():
        t = dict(t)
        if "retention" in t:
            t["retention"] = {c: (-1 if math.isinf(v) else v) for c, v in t["retention"].items()}
        out[key] = t
    return out


def _limit(v: float) -> float:
    return math.inf if v < 0 else v


LIST_FIELDS = ("categories", "functions", "third_parties")
FIXED_FIELDS = ("kind", "purpose", "legal_basis")


def covers(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Does a consent given to ``old`` terms also allow ``new`` ones?

    Yes when the new terms take nothing more: no new category, function or
    third party, no longer retention, the same purpose and legal basis.
    Narrower terms (fewer categories, shorter retention) are covered, so a
    revision that only gives users more never asks them again.
    """
    if old is None or new is None:
        return False
    for f in FIXED_FIELDS:
        if f in new and new.get(f) != old.get(f):
            return False
    for f in LIST_FIELDS:
        if not set(new.get(f, ())) <= set(old.get(f, ())):
            return False
    old_ret = old.get("retention", {})
    for c, days in new.get("retention", {}).items():
        if c not in old_ret or _limit(days) > _limit(old_ret[c]):
            return False
    return True


def reductions(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """Subjects whose consents the new version would stretch (the changes that
    make a revision significant: users must agree again before they apply)."""
    return sorted(k for k, t in new.items() if k in old and not covers(old[k], t))


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(parts)


def parse(text: str, *, source: str = "catalog") -> Catalog:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: the catalog must be a mapping")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {_format_validation(exc)}") from exc


@lru_cache(maxsize=8)
def load(path: Path | None = None) -> Catalog:
    p = path or DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{p}: cannot read the catalog: {exc}") from exc
    return parse(text, source=str(p))


def catalog_of(rt: Runtime) -> Catalog:
    """The catalog this process serves: ``KARES_PRIVACY_CATALOG``, or the shipped one
    (read and validated once per process; ``create_app`` reads it at start-up)."""
    return load(rt.settings.privacy_catalog)
