"""The record of the Airflow matrix CI last ran, and README's table rendered from it.

``.ci/airflow-matrix`` calls this in each cell's own venv (``--cell``: that venv's Airflow and
Python, the differences xcomsim met there, what ran and how it ended), then writes the cells
as ``docs/airflow-matrix.json`` (``--write``). README's table is ``table()`` of that file,
right after a marker (``--readme`` rewrites it), and the docs test holds the two equal: the
table says what a run said, never what someone typed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

BEGIN = "<!-- airflow-matrix: generated from docs/airflow-matrix.json by python -m xcomsim.compat.matrix --readme -->"


def cell(what: str, summary: str, seconds: int | None, not_run: str = "") -> dict[str, Any]:
    """This interpreter's cell: its Airflow and Python, and the differences xcomsim met there."""
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="xcomsim-matrix-"))  # importing Airflow writes there
    from xcomsim import compat

    return {
        "airflow": metadata.version("apache-airflow"),
        "python": platform.python_version(),
        "what": what,
        "result": summary,
        "seconds": seconds,
        "not_run": not_run.split(),
        "differences": [difference.name for difference, applies in compat.differences() if applies],
        # The machine's 15-minute load average as the cell ends: a time measured on a shared machine says so.
        "load": round(os.getloadavg()[2], 1) if hasattr(os, "getloadavg") else None,
    }


def record(cells: list[dict[str, Any]], when: datetime.date | None = None) -> dict[str, Any]:
    ordered = sorted(cells, key=lambda c: [int(p) for p in re.findall(r"\d+", c["airflow"])][:3], reverse=True)
    return {"date": (when or datetime.date.today()).isoformat(), "cells": ordered}


def table(data: dict[str, Any]) -> str:
    """README's matrix table (markdown): one row per cell, the run's date in the header."""
    lines = [
        f"| Airflow (run of {data['date']}) | Python | what ran | result | time | differences xcomsim met |",
        "|---|---|---|---|---:|---|",
    ]
    for c in data["cells"]:
        seconds = f"{c['seconds'] // 60} min {c['seconds'] % 60:02d} s" if c.get("seconds") else "–"
        if c.get("seconds") and c.get("load") is not None:
            seconds += f" (load {c['load']:g})"
        what = c["what"] + (f" (not run: {', '.join(f'`{p}`' for p in c['not_run'])})" if c.get("not_run") else "")
        met = ", ".join(f"`{d}`" for d in c["differences"]) or "none"
        lines.append(f"| {c['airflow']} | {c['python']} | {what} | {c['result']} | {seconds} | {met} |")
    return "\n".join(lines)


def readme_section(text: str) -> str | None:
    """The generated table in README (after the marker's line and one blank line), or None without the marker."""
    if BEGIN not in text:
        return None
    after = text[text.index(BEGIN) + len(BEGIN):].split("\n")[2:]
    rows = []
    for line in after:
        if not line.startswith("|"):
            break
        rows.append(line)
    return "\n".join(rows)


def rewrite_readme(readme: Path, data: dict[str, Any]) -> None:
    text = readme.read_text()
    old = readme_section(text)
    if old is None:
        raise SystemExit(f"{readme} has no matrix marker {BEGIN!r}")
    at = text.index(BEGIN) + len(BEGIN) + 2  # the marker's line ends, then one blank line
    readme.write_text(text[:at] + table(data) + ("\n\n" if not old else "") + text[at + len(old):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xcomsim.compat.matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--cell", metavar="RECORD", help="append this interpreter's cell to RECORD (JSON lines)")
    parser.add_argument("--what", default="")
    parser.add_argument("--summary", default="")
    parser.add_argument("--seconds", type=int, default=None)
    parser.add_argument("--not-run", default="")
    parser.add_argument("--write", nargs=2, metavar=("RECORD", "OUT"), help="write RECORD's cells as OUT (JSON)")
    parser.add_argument("--table", metavar="FILE", help="print FILE's table")
    parser.add_argument("--readme", action="store_true", help="render README.md's table from docs/airflow-matrix.json")
    args = parser.parse_args(argv)
    if args.cell:
        with open(args.cell, "a") as out:
            out.write(json.dumps(cell(args.what, args.summary, args.seconds, args.not_run)) + "\n")
    if args.write:
        cells = [json.loads(line) for line in Path(args.write[0]).read_text().splitlines() if line.strip()]
        Path(args.write[1]).write_text(json.dumps(record(cells), indent=2) + "\n")
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
    if args.readme:
        root = Path(__file__).resolve().parents[2]
        rewrite_readme(root / "README.md", json.loads((root / "docs" / "airflow-matrix.json").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
