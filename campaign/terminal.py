"""What ``campaign run`` shows on the terminal: its own lines and progress only. Everything the
science libraries print while steps run (TensorFlow and absl banners, apax and torch warnings,
C-level output of worker processes) goes to ``<workdir>/campaign.log`` instead.

The run's standard output and error are pointed at the log at the file-descriptor level, so
worker processes started meanwhile inherit it too; the campaign's own messages go to a copy of the
terminal's standard error taken before. Progress is a set of bars on a terminal and plain lines
(a step's start, every tenth of its tasks, its end) when the output is a file or a pipe.

Text that comes from a spec, an archive or an exception (step names above all: an archive may come
from anyone) reaches the terminal through ``printable`` or ``plain``: never read as rich markup,
and without control characters, so no escape sequence in a name drives the terminal.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.text import Text

LOG = "campaign.log"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` without control characters (C0, DEL and C1: escape sequences lose their ESC and CSI);
    print it with ``markup=False``."""
    return _CONTROL.sub("", str(text))


def plain(text: object, style: str = "") -> Text:
    """``printable(text)`` as rich Text, which is never read as markup (for table cells and titles)."""
    return Text(printable(text), style=style)


@contextmanager
def third_party_output_to_log(workdir: Path) -> Iterator[Console]:
    """Point this process's standard output and error (and those of the processes it starts) at
    ``<workdir>/campaign.log`` while the block runs; yields a console that still reaches the terminal."""
    workdir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = Console(file=os.fdopen(os.dup(2), "w", buffering=1, closefd=True), stderr=True)
    log = os.open(workdir / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(log, f"\n=== campaign run, {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    logging.captureWarnings(True)
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # every warning once per place, into the log
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.captureWarnings(False)
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            terminal.file.close()


@contextmanager
def progress_display(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback ``(step name, tasks done, tasks known)``: bars on a terminal, else plain lines."""
    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description:<22}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bars:
            ids: dict[str, int] = {}

            def update(name: str, done: int, total: int) -> None:
                if name not in ids:
                    ids[name] = bars.add_task(printable(name), total=total)
                bars.update(ids[name], completed=done, total=total)

            yield update
        return
    shown: dict[str, int] = {}  # step -> the tenth of its tasks last shown
    started: dict[str, float] = {}

    def line(name: str, done: int, total: int) -> None:
        tenth = 10 * done // total if total else 0
        shown_name = printable(name)
        if name not in shown:
            started[name] = time.monotonic()
            console.print(f"{shown_name}: started, {done}/{total} task(s) done", markup=False, highlight=False)
        elif done == total:
            seconds = time.monotonic() - started[name]
            console.print(f"{shown_name}: {done}/{total} task(s) done, {seconds:.0f} s", markup=False,
                          highlight=False)
        elif tenth > shown[name]:
            console.print(f"{shown_name}: {done}/{total} task(s) done", markup=False, highlight=False)
        shown[name] = tenth

    yield line


def guard_note(record: dict) -> str:
    """What the guards did in a finished step, in a few words ("" where they had nothing to do)."""
    summary, kind = record.get("summary", {}), record["kind"]
    if kind == "select" and summary.get("n_guarded"):
        per_sampler = ", ".join(f"{name} {g['n_removed']}" for name, g in summary["guard"].items())
        return f"guards removed {summary['n_guarded']} candidate(s) ({per_sampler})"
    if kind == "label" and summary.get("n_refused"):
        return f"refused {summary['n_refused']} label(s) above guards.max_force"
    if kind == "md" and (summary.get("stop_reason") or "").startswith(("contact guard", "bond guard", "exploded")):
        return f"stopped at step {summary['stopped_at']}: {summary['stop_reason'].split(': ', 1)[-1]}"
    if summary.get("guard_stops"):
        return f"guards ended {len(summary['guard_stops'])} optimisation(s)"
    if kind == "initial_rattle" and summary.get("n_redrawn"):
        return f"redrew {summary['n_redrawn']} rattled frame(s) that broke the guards"
    if kind == "pack" and summary.get("rejected"):
        return f"repacked {len(summary['rejected'])} time(s): a molecule met its own periodic image"
    return ""
