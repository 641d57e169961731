"""Keeping a long-lived worker under Linux's memory-map limit.

XLA's CPU backend maps memory regions for every compiled function (3 to 15 each, measured), and a campaign's workers
(the process pool, Parsl's workers) live for the whole run and keep compiling. Past
``vm.max_map_count`` (65,530 by default) mmap fails and XLA crashes the worker, days into a run.
After each task a worker that has used more than :data:`SHARE` of the limit drops JAX's compiled
code (``jax.clear_caches()``); what runs next compiles again.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: share of vm.max_map_count past which a worker drops its compiled code
SHARE = 0.5


def map_count() -> int:
    """This process's memory maps (lines of /proc/self/maps); 0 where there is no /proc."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return 0


def map_limit() -> int | None:
    """Linux's vm.max_map_count, or None where it cannot be read."""
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None


def relieve(limit: int | None = None) -> tuple[int, int] | None:
    """Drop JAX's compiled code if this process holds more than SHARE of ``limit`` (default: the
    system's) memory maps; (maps before, maps after) when it did, else None. JAX is never imported
    here: a worker that has not loaded it has nothing to drop."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    limit = map_limit() if limit is None else limit
    if limit is None:
        return None
    before = map_count()
    if before <= SHARE * limit:
        return None
    jax.clear_caches()
    return before, map_count()
