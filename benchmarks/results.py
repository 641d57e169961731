"""Benchmark results as JSON, with when, where and how they were measured; the documentation's
benchmark page renders every file in ``benchmarks/results/`` (ilcampaign.campaign.docgen)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The processor, core count, memory and operating system of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory, "system": platform.platform(),
            "python": platform.python_version()}


def commit() -> str:
    """The git commit of the code measured (with ``+changes`` if the tree differs from it)."""
    root = RESULTS.parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def load_average() -> str:
    """The 1-minute load average where it exceeds a third of the cores (a busy machine), else ''."""
    load = os.getloadavg()[0]
    return f"load average {load:.1f} on {os.cpu_count()} cores" if load > (os.cpu_count() or 1) / 3 else ""


def start_and_end(loads: list[str]) -> str:
    """:func:`load_average` taken at a run's start and end, as one line of the busy ones."""
    return "; ".join(f"{when}: {value}" for when, value in zip(("at the start", "at the end"), loads) if value)


def _script() -> str:
    """The script run, relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    root = RESULTS.parent.parent
    return script.relative_to(root).as_posix() if script.is_relative_to(root) else script.name


def table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def save(name: str, title: str, description: str, tables: list[dict[str, Any]], load: str = "") -> Path:
    """Write ``benchmarks/results/<name>.json``: the tables with date, machine, commit and command."""
    RESULTS.mkdir(exist_ok=True)
    result = {
        "title": title, "description": description,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "commit": commit(),
        "command": " ".join(["python", _script(), *sys.argv[1:]]),
        "load": load, "tables": tables,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path
