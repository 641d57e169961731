"""Seconds a worker spends compiling JAX code, from JAX's own monitoring events.

A task's time is its work plus the compilation of code it is the first to need (tracing, lowering
and XLA's compile or its persistent cache). The two scale differently: the work with atoms and
steps, compilation with the number of distinct programs. Each task reports its compile time
apart (``compile_s``), so a forecast can fit the work alone (``campaign.rehearsal.forecast``).
JAX is never imported here: a worker that never loads it compiles nothing.
"""

from __future__ import annotations

import sys

#: JAX's duration events that make up compilation; the persistent cache's retrieval is inside the backend's
EVENTS = "/jax/core/compile/"

_spent = 0.0
_listening = False


def _add(event: str, seconds: float, **_: object) -> None:
    global _spent
    if event.startswith(EVENTS):
        _spent += seconds


def listen() -> None:
    """Count compilation from now on in this process (once; where JAX is loaded)."""
    global _listening
    if _listening or "jax" not in sys.modules:
        return
    from jax import monitoring

    monitoring.register_event_duration_secs_listener(_add)
    _listening = True


def spent() -> float:
    """Seconds this process has spent compiling since it began to listen."""
    return _spent
