"""Draw the layers of Kares as a Mermaid diagram, from the code itself.

The layers come from the import-linter contract in pyproject.toml (the same one
CI enforces); the arrows are the imports the code really has between its
top-level packages and modules, measured by grimp (which import-linter uses),
imports inside functions and under TYPE_CHECKING included. Every package uses
the plumbing, so that is one arrow; the entry points import every domain, so
only their way in is drawn.

    .venv/bin/python scripts/layers.py            # print the diagram
    .venv/bin/python scripts/layers.py --check    # exit 1 if docs/ARCHITECTURE.md differs

docs/ARCHITECTURE.md carries the output between its ``layers:begin`` and
``layers:end`` markers; a test runs ``--check``.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN, END = "<!-- layers:begin (scripts/layers.py) -->", "<!-- layers:end -->"

# how the contract's layers are grouped into boxes of the picture
BANDS = [
    ("entry points", {"__main__", "cli", "app", "domains"}),
    ("protocols (wire formats)", {"protocols"}),
    ("rights, retention and statistics", {"rights", "retention", "stats"}),
    ("features", {"calls", "messaging", "sos", "location", "health", "schedule"}),
    ("people", {"watches", "families", "accounts", "notify", "devices", "media"}),
    ("privacy core", {"privacy"}),
    ("identity", {"identity"}),
]
PLUMBING = "plumbing"


def layers() -> list[list[str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in cfg["tool"]["importlinter"]["contracts"] if c.get("id") == "layers")
    out = []
    for layer in contract["layers"]:
        sep = "|" if "|" in layer else ":"
        out.append([p.strip() for p in layer.split(sep)])
    return out


def band_of(name: str) -> str:
    for band, members in BANDS:
        if name in members:
            return band
    return PLUMBING


def diagram() -> str:
    order = [n for layer in layers() for n in layer]
    graph = grimp.build_graph("kares", exclude_type_checking_imports=False)
    top = {f"kares.{n}": n for n in order}

    def owner(module: str) -> str | None:
        parts = module.split(".")
        return top.get(".".join(parts[:2]))

    edges: set[tuple[str, str]] = set()
    for module in graph.modules:
        src = owner(module)
        if src is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            dst = owner(imported)
            if dst is None or dst == src:
                continue
            a = src if band_of(src) != PLUMBING else PLUMBING
            b = dst if band_of(dst) != PLUMBING else PLUMBING
            if a != b and a in ("cli", "app", "__main__", "domains") and b != "domains":
                # the entry points import everything; draw only their way into the house
                if b not in ("domains", "app", "cli"):
                    continue
            if a != b:
                edges.add((a, b))
    lines = ["```mermaid", "flowchart TB"]
    for i, (band, members) in enumerate(BANDS):
        lines.append(f'  subgraph band{i}["{band}"]')
        for n in order:
            if n in members:
                lines.append(f"    {n.strip('_') or n}[{n}]")
        lines.append("  end")
    plumbing = [n for n in order if band_of(n) == PLUMBING]
    lines.append(f'  {PLUMBING}["plumbing, which every box above uses: {", ".join(plumbing)}"]')
    lines.append(f"  band{len(BANDS) - 1} --> {PLUMBING}")
    for a, b in sorted(edges):
        if b == PLUMBING:
            continue
        lines.append(f"  {a.strip('_') or a} --> {b.strip('_') or b}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare with docs/ARCHITECTURE.md")
    args = p.parse_args()
    drawn = diagram()
    if not args.check:
        sys.stdout.write(drawn)
        return 0
    text = DOC.read_text(encoding="utf-8")
    try:
        current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    except IndexError:
        print(f"{DOC}: no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    if current != drawn:
        print(f"{DOC}: the layers diagram is out of date; run scripts/layers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
