"""The README, as a newcomer reads it in a fresh clone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# made when Kares runs, never part of a clone
RUNTIME = ("var/", "./var", ".venv")


def _paths(text: str) -> set[str]:
    """Files and folders the text points at: link targets, and `quoted` names
    with a folder in them or a file's extension (not routes, URLs or globs)."""
    found = set(re.findall(r"\]\(([^)#\s]+)", text))
    for quoted in re.findall(r"`([^`\s]+)`", text):
        if quoted.startswith(("/", "$", "-", "<")) or "*" in quoted or "://" in quoted:
            continue
        if "/" in quoted or re.search(r"\.(md|py|toml|txt|yaml|sh|lua|json)$", quoted):
            found.add(quoted)
    return {p for p in found if not p.startswith(("http:", "https:", "mailto:"))}


@pytest.mark.db_agnostic
def test_the_readme_points_only_at_what_a_clone_holds() -> None:
    paths = _paths(README)
    assert "docs/ARCHITECTURE.md" in paths and "scripts/serve" in paths  # the scan works
    outside = [p for p in sorted(paths) if not (ROOT / p).resolve().is_relative_to(ROOT)]
    assert outside == []  # e.g. ../shared/..., which a clone does not have
    missing = [p for p in sorted(paths - set(outside)) if not p.startswith(RUNTIME)]
    assert [p for p in missing if not (ROOT / p).exists()] == []


@pytest.mark.db_agnostic
def test_trying_it_says_how_to_consent_to_precise_location_and_share_history() -> None:
    trying = README[README.index("## Trying it") : README.index("## The `kares` command")]
    assert '"subject": "category:location.precise", "action": "grant"' in trying
    assert "/members/me/sharing" in trying and '{"location": "history"}' in trying
    assert "approximate" in trying and "sharing.off" in trying
