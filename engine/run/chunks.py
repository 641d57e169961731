"""Long runs split into chunks, one task each: a chunk starts from the state file the previous one
left, so a killed run resumes at its last finished chunk (losing at most one chunk of work).

A chunk's task id holds its step range (``steps000001000-000002000``), so the chunks already run
fix where the next one starts even if the checkpoint interval was changed in between.

A state file is plain data, never code: an ``.npz`` file read with ``allow_pickle=False``, its
arrays stored as arrays and every other value (numbers, strings, None, and lists and dicts of
those, such as a random generator's state) in one JSON entry, ``__values__.json``. A state of
arrays only (JAX MD's) has no JSON entry. Reading one that is anything else (a pickle, an array of
objects) fails with StepFailed and runs nothing.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import numpy as np

from ilcampaign.archive.atomic import atomic_write_bytes
from ilcampaign.engine.step import StepContext, StepFailed

_RANGE = re.compile(r"steps(\d{9})-(\d{9})$")
#: the npz entry holding a state's values that are not arrays
VALUES = "__values__.json"
ZIP_MAGIC = b"PK\x03\x04"


def chunk_id(first: int, last: int, prefix: str = "") -> str:
    return f"{prefix}steps{first:09d}-{last:09d}"


def chunk_range(task_id: str) -> tuple[int, int]:
    """(first, last) step of a chunk task id."""
    match = _RANGE.search(task_id)
    if match is None:
        raise ValueError(f"not a chunk task id: {task_id}")
    return int(match.group(1)), int(match.group(2))


def chunks(done: dict[str, dict], prefix: str = "") -> list[str]:
    """The finished chunk task ids with ``prefix``, in step order."""
    return sorted(t for t in done if t.startswith(prefix) and _RANGE.search(t[len(prefix):]))


def next_chunk(done: dict[str, dict], n_steps: int, every: int, prefix: str = "") -> list[str]:
    """The next chunk to run (at most ``every`` steps), or none once the run reached ``n_steps``
    or a chunk reported that it stopped (``stopped_at`` in its summary)."""
    finished = chunks(done, prefix)
    if any(done[t].get("stopped_at") is not None for t in finished):
        return []
    first = chunk_range(finished[-1])[1] if finished else 0
    return [chunk_id(first, min(first + every, n_steps), prefix)] if first < n_steps else []


def read_state(ctx: StepContext, task_id: str) -> dict[str, Any] | None:
    """The state the chunk before ``task_id`` left (None for a run's first chunk); StepFailed, naming
    the files to delete to run that chunk again, if it is not a plain-data state."""
    first = chunk_range(task_id)[0]
    if first == 0:
        return None
    prefix = task_id[: _RANGE.search(task_id).start()]
    done = ctx.done_tasks()
    previous = [t for t in chunks(done, prefix) if chunk_range(t)[1] == first]
    if not previous:
        raise RuntimeError(f"{ctx.key[:12]}: no finished chunk ends at step {first}")
    path = ctx.archive.task_file(ctx.key, previous[0], ".state")
    try:
        return decode_state(path.read_bytes())
    except ValueError as exc:
        summary = ctx.archive.task_file(ctx.key, previous[0], ".json")
        raise StepFailed(f"the chunk state {path} is refused: {exc}; nothing in it was run. Delete it and "
                         f"{summary.name} beside it to run that chunk again") from None


def write_state(ctx: StepContext, task_id: str, state: dict[str, Any]) -> None:
    """Store a chunk's end state (before its summary marks it finished)."""
    atomic_write_bytes(ctx.archive.task_file(ctx.key, task_id, ".state"), encode_state(state))


def encode_state(state: dict[str, Any]) -> bytes:
    """``state`` (names -> arrays, numpy scalars or JSON values) as the bytes of an npz file; TypeError
    for anything else (an object array, a value JSON cannot hold)."""
    arrays, values, scalars = {}, {}, []
    for name, value in state.items():
        if name == VALUES:
            raise TypeError(f"{name!r} is reserved")
        if isinstance(value, np.generic):
            value = np.asarray(value)
            scalars.append(name)
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"{name}: an array of Python objects is no plain data")
            arrays[name] = value
        else:
            values[name] = value
    buffer = io.BytesIO()
    plain = json.dumps({"values": values, "scalars": scalars}, sort_keys=True) if values or scalars else None
    extra = {} if plain is None else {VALUES: np.frombuffer(plain.encode(), dtype=np.uint8)}
    np.savez(buffer, **arrays, **extra)
    return buffer.getvalue()


def decode_state(data: bytes) -> dict[str, Any]:
    """The state ``encode_state`` wrote; ValueError (and nothing executed) for any other bytes."""
    if not data.startswith(ZIP_MAGIC):
        raise ValueError("not a plain-data state (an .npz file); states of earlier versions were pickles, which "
                         "are never loaded")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            state = {name: npz[name] for name in npz.files}
        plain = state.pop(VALUES, None)
        if plain is None:
            return state
        extra = json.loads(bytes(plain.astype(np.uint8)).decode())
        for name in extra["scalars"]:
            state[name] = state[name][()]
        state.update(extra["values"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not a plain-data state ({type(exc).__name__}: {exc})") from None
    return state
