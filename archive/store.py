"""The campaign archive: one folder per step key, an index written last, a journal per step.

Layout under ``<workdir>/archive``::

    index.json                 finished steps {key: {name, kind, record_sha256, finished}} and
                               names {step name: key last finished under that name}
    campaign.json              the spec as written and the step graph it resolved to, as of the last
                               `campaign run` (reports tell done / stale / not run from it alone)
    steps/<key>/record.json    parameters, input keys, versions, host, times, output checksums
    steps/<key>/<outputs>      H5MD frames, netCDF arrays, blobs
    steps/<key>/tasks/         per-task results: frames while the step runs, summaries kept;
                               <task>.ckpt/ holds a long task's checkpoints until the step finishes
    steps/<key>/journal.jsonl  append-only events: task started / finished / failed
    cache/<hash>.h5            content-addressed single calculations, shared across steps
    blobs/<sha256>             content-addressed files (trained models as canonical tars)

A step counts as finished only once its key is in the index; the index is replaced atomically
after the record and outputs are durable, so a crash at any instant leaves a readable archive.
Outputs and blobs are byte-stable (the same result gives the same bytes, wherever and whenever
it was computed: ilcampaign.archive.hdf5, ilcampaign.engine.models.blob); times and hosts go to records only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from ilcampaign.archive.atomic import TMP_SUFFIX, append_line, atomic_copy, atomic_write_json, sha256_file

FORMAT = 1
_INDEX_LOCK = threading.Lock()  # the index is read, changed and replaced as one step
_DIGEST = re.compile(r"[0-9a-f]{64}")


class ArchiveError(Exception):
    """The archive is damaged or used wrongly."""


def checked_digest(value: Any, what: str = "digest") -> str:
    """``value`` if it is a SHA-256 digest in hex (64 characters 0-9, a-f), the only form in which a
    step key or checksum read from an archive or export becomes part of a path; ArchiveError otherwise."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ArchiveError(f"refused: the {what} {str(value)[:80]!r} is no SHA-256 digest (64 hex characters)")
    return value


def checked_name(value: Any, what: str = "output name") -> str:
    """``value`` if it is a plain file name (no folder, no ``..``, no control character), the only form
    in which a name read from an archive or export becomes part of a path; ArchiveError otherwise."""
    if (not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value
            or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise ArchiveError(f"refused: the {what} {str(value)[:80]!r} is no plain file name")
    return value


class Archive:
    """Access to a campaign archive folder."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    # ----------------------------------------------------------------- index
    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def index(self) -> dict[str, Any]:
        """The index; an empty one for a new archive."""
        if not self.index_path.exists():
            return {"format": FORMAT, "steps": {}, "names": {}}
        return json.loads(self.index_path.read_text())

    def is_done(self, key: str) -> bool:
        return key in self.index()["steps"]

    def key_for_name(self, name: str) -> str | None:
        """The key last finished under a step name (to tell a stale step from a new one)."""
        return self.index()["names"].get(name)

    # ----------------------------------------------------------------- campaign
    @property
    def manifest_path(self) -> Path:
        return self.root / "campaign.json"

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Record the spec and its step graph (replaced atomically on every run)."""
        atomic_write_json(self.manifest_path, manifest)

    def manifest(self) -> dict[str, Any] | None:
        """The spec and step graph of the last run; None before any run."""
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text())

    # ----------------------------------------------------------------- steps
    def step_dir(self, key: str) -> Path:
        return self.root / "steps" / checked_digest(key, "step key")

    def output(self, key: str, filename: str) -> Path:
        """Path of a finished step's output file."""
        return self.step_dir(key) / checked_name(filename)

    def record(self, key: str) -> dict[str, Any]:
        path = self.step_dir(key) / "record.json"
        if not path.exists():
            raise ArchiveError(f"step {key[:12]} has no record")
        return json.loads(path.read_text())

    def commit(self, key: str, name: str, record: dict[str, Any], outputs: list[str]) -> None:
        """Mark a step finished: checksum its outputs, write its record, then update the index."""
        folder = self.step_dir(key)
        record = dict(record, key=key, name=name, outputs={f: sha256_file(folder / f) for f in outputs})
        atomic_write_json(folder / "record.json", record)
        with _INDEX_LOCK:  # steps of one run commit from several threads
            index = self.index()
            index["steps"][key] = {
                "name": name,
                "kind": record["kind"],
                "record_sha256": sha256_file(folder / "record.json"),
                "finished": record["finished"],
            }
            index["names"][name] = key
            atomic_write_json(self.index_path, index)

    # ----------------------------------------------------------------- tasks
    def task_dir(self, key: str) -> Path:
        return self.step_dir(key) / "tasks"

    def task_file(self, key: str, task_id: str, suffix: str) -> Path:
        return self.task_dir(key) / f"{task_id}{suffix}"

    def done_tasks(self, key: str) -> dict[str, dict[str, Any]]:
        """Finished tasks of a step: {task id: its result summary}. The summary is written last."""
        folder = self.task_dir(key)
        if not folder.exists():
            return {}
        return {
            path.stem: json.loads(path.read_text())
            for path in sorted(folder.glob("*.json"))
            if not path.name.startswith(".")
        }

    def checkpoint_dir(self, key: str, task_id: str) -> Path:
        """Where a long task keeps its checkpoints while it runs (kept across kills, dropped when
        its step is committed)."""
        return self.task_dir(key) / f"{task_id}.ckpt"

    def prune_task_files(self, key: str) -> None:
        """Drop per-task frames, states and checkpoints of a finished step (its outputs hold what
        matters); task summaries stay."""
        folder = self.task_dir(key)
        for path in folder.glob("*.h5"):
            path.unlink()
        for path in folder.glob("*.state"):
            path.unlink()
        for path in folder.glob("*.ckpt"):
            shutil.rmtree(path, ignore_errors=True)

    def commit_task(self, key: str, task_id: str, summary: dict[str, Any]) -> None:
        """Mark a task finished (its other files must already be written)."""
        atomic_write_json(self.task_file(key, task_id, ".json"), summary)

    # ----------------------------------------------------------------- journal
    def journal(self, key: str, event: dict[str, Any]) -> None:
        append_line(self.step_dir(key) / "journal.jsonl", json.dumps(event, sort_keys=True))

    def events(self, key: str) -> list[dict[str, Any]]:
        """The journal of a step; a line torn by a crash is skipped."""
        path = self.step_dir(key) / "journal.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    # ----------------------------------------------------------------- cache
    def cache_file(self, digest: str) -> Path:
        checked_digest(digest, "calculation digest")
        return self.root / "cache" / digest[:2] / f"{digest}.h5"

    # ----------------------------------------------------------------- blobs
    def blob_path(self, digest: str) -> Path:
        checked_digest(digest, "blob digest")
        return self.root / "blobs" / digest[:2] / digest

    def put_blob(self, source: Path) -> str:
        """Store a file under its SHA-256 (atomically; a blob already there is kept)."""
        digest = sha256_file(source)
        target = self.blob_path(digest)
        if not target.exists():
            atomic_copy(source, target)
        return digest

    def checked_blob(self, digest: str) -> Path:
        """The path of a blob whose bytes match its digest (checked now, before anything unpacks it);
        ArchiveError if they do not."""
        path = self.blob_path(digest)
        if not path.is_file() or sha256_file(path) != digest:
            raise ArchiveError(f"the blob {digest[:12]} is {'damaged' if path.is_file() else 'missing'}: its "
                               "bytes do not match its SHA-256")
        return path

    # ----------------------------------------------------------------- checks
    def verify(self) -> list[str]:
        """Recompute every checksum of finished steps; returns the problems found (empty: all good)."""
        problems = []
        for key, entry in self.index()["steps"].items():
            try:
                folder = self.step_dir(key)
            except ArchiveError as exc:
                problems.append(f"{entry.get('name', '?')}: {exc}")
                continue
            record_path = folder / "record.json"
            if not record_path.exists():
                problems.append(f"{entry['name']} ({key[:12]}): record.json missing")
                continue
            if sha256_file(record_path) != entry["record_sha256"]:
                problems.append(f"{entry['name']} ({key[:12]}): record.json checksum mismatch")
                continue
            record = json.loads(record_path.read_text())
            try:
                files = {self.output(key, name): checksum for name, checksum in record["outputs"].items()}
                files.update({self.blob_path(digest): digest for digest in record.get("blobs", {}).values()})
            except ArchiveError as exc:
                problems.append(f"{entry['name']} ({key[:12]}): {exc}")
                continue
            for path, checksum in files.items():
                if not path.exists():
                    problems.append(f"{entry['name']} ({key[:12]}): {path.name} missing")
                elif sha256_file(path) != checksum:
                    problems.append(f"{entry['name']} ({key[:12]}): {path.name} checksum mismatch")
        return problems

    def sweep_temporaries(self) -> int:
        """Delete temporary files left by writers that were killed; returns how many."""
        count = 0
        if self.root.exists():
            for path in self.root.rglob(f"*{TMP_SUFFIX}"):
                path.unlink(missing_ok=True)
                count += 1
        return count
