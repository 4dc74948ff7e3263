"""Family view of health: what a member may read of another member's health
in one family, by that person's sharing level there (off, summaries, series)
and by both people's own consents. The readings themselves come from
``kares.health.service``: this module only decides what may be read."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kares import clock
from kares.errors import Problem
from kares.families import service as families
from kares.health.metrics import METRICS
from kares.identity.models import Account
from kares.privacy import service as privacy
from kares.privacy.catalog import Catalog

FEATURES = ("readings", "steps")
NEEDS = ("summaries", "series")


def not_shared(level: str, need: str) -> Problem:
    return Problem(
        403,
        "health.not_shared",
        "This member does not share their health "
        + ("series" if need == "series" else "summaries")
        + " with this family.",
        level=level,
        needed=need,
    )


async def _features(s: AsyncSession, cat: Catalog, account: Account) -> dict[str, Problem | None]:
    """Per feature: None when the account's own consents let it be processed now,
    else the refusal (the guard's account and consent checks, no device)."""
    out: dict[str, Problem | None] = {}
    for feature in FEATURES:
        try:
            await privacy.check_for_job(s, cat, account, "health", feature)
            out[feature] = None
        except Problem as exc:
            out[feature] = exc
    return out


async def readable_metrics(
    s: AsyncSession,
    cat: Catalog,
    *,
    family_id: str,
    viewer: Account,
    subject_id: str,
    need: str,
) -> set[str]:
    """The metrics of ``subject_id`` that ``viewer`` may read through this family
    now, at ``need`` (summaries: latest values and summaries; series: raw series).

    404 ``family.not_found`` when the viewer is not a member, 404
    ``family.member_not_found`` when the subject is not; 403 ``health.not_shared``
    when the subject's level there (a pause counts as off) is below ``need`` or
    the subject's own consents let no health data be processed; the viewer's own
    consent refusal when the viewer has consented to neither feature."""
    assert need in NEEDS
    await families.require_member(s, family_id, viewer.id)
    m = await families.member(s, family_id, subject_id)
    subject = await s.get(Account, subject_id) if m is not None else None
    if m is None or subject is None:
        raise Problem(404, "family.member_not_found", "No such member in this family.")
    if subject_id != viewer.id:
        level = families.effective(m, clock.utcnow()).health_level
        if not families.health_allows(level, need):
            raise not_shared(level, need)
    mine = await _features(s, cat, viewer)
    theirs = mine if subject_id == viewer.id else await _features(s, cat, subject)
    ok = {f for f in FEATURES if mine[f] is None and theirs[f] is None}
    if not ok:
        if all(p is not None for p in mine.values()):
            first = mine[FEATURES[0]]
            assert first is not None
            raise first
        # the person withdrew their consent: nothing of it reaches the family
        raise Problem(
            403,
            "health.not_shared",
            "This member's health data is not available to the family now.",
            level="off",
            needed=need,
        )
    return {k for k, x in METRICS.items() if x.feature in ok}
