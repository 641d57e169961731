"""A read-only view of a campaign archive through its manifest: which steps are done, stale or
not run, and their records and datasets. Reports and figures read the archive through this only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from ilcampaign.archive.store import Archive

STATES = ("done", "stale", "not run")


@dataclass(frozen=True)
class StepView:
    """One step of the manifest and its state in the archive."""

    name: str
    key: str
    kind: str
    group: str
    inputs: dict[str, str]
    state: str  # one of STATES


class CampaignView:
    """The campaign a manifest describes, as far as its archive holds it.

    Only results under the manifest's own keys count: a step finished under another key (an
    older version of the spec) is ``stale`` and its outputs are not shown as results.
    """

    def __init__(self, archive: Archive, manifest: dict[str, Any]):
        self.archive = archive
        self.manifest = manifest
        index = archive.index()
        self.index = index
        self.steps: list[StepView] = []
        for step in manifest["steps"]:
            if step["key"] in index["steps"]:
                state = "done"
            elif step["name"] in index["names"]:
                state = "stale"
            else:
                state = "not run"
            self.steps.append(StepView(step["name"], step["key"], step["kind"], step["group"], step["inputs"], state))
        self._by_name = {step.name: step for step in self.steps}

    # ---------------------------------------------------------------- steps
    def step(self, name: str) -> StepView | None:
        return self._by_name.get(name)

    def done(self, name: str) -> bool:
        step = self._by_name.get(name)
        return step is not None and step.state == "done"

    def names(self, kind: str | None = None, group: str | None = None, done: bool = True) -> list[str]:
        """Step names in graph order, filtered by kind, group and (by default) finished."""
        return [s.name for s in self.steps if (kind is None or s.kind == kind) and (group is None or s.group == group)
                and (not done or s.state == "done")]

    def key(self, name: str) -> str:
        return self._by_name[name].key

    def keys(self, names: list[str]) -> dict[str, str]:
        """Step name -> key, for captions and cache keys."""
        return {name: self._by_name[name].key for name in names}

    def groups(self) -> list[str]:
        """Step groups in graph order (setup, initial model, iterations, production, analyses)."""
        seen: dict[str, None] = {}
        for step in self.steps:
            seen.setdefault(step.group, None)
        return list(seen)

    # ---------------------------------------------------------------- data
    def record(self, name: str) -> dict[str, Any] | None:
        """The record of a finished step; None when it is not done."""
        return self.archive.record(self.key(name)) if self.done(name) else None

    def summary(self, name: str) -> dict[str, Any]:
        record = self.record(name)
        return record.get("summary", {}) if record else {}

    def path(self, name: str, filename: str) -> Path | None:
        """Path of a finished step's output; None when the step is not done or has no such file."""
        if not self.done(name):
            return None
        path = self.archive.output(self.key(name), filename)
        return path if path.exists() else None

    def outputs(self, name: str) -> list[str]:
        record = self.record(name)
        return sorted(record["outputs"]) if record else []

    def dataset(self, name: str, filename: str) -> xr.Dataset | None:
        """A finished step's netCDF output, loaded into memory (the file is closed again)."""
        path = self.path(name, filename)
        if path is None:
            return None
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
