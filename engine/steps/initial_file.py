"""``initial_data: {kind: file}``: the first configurations read from a trajectory file."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ilcampaign.campaign.spec import CampaignSpec, InitialFile, not_hashed
from ilcampaign.engine.hashing import hashed_as_fields
from ilcampaign.engine.step import SingleTaskStep, StepContext, StepFailed, TaskResult, register


@register
class InitialFileStep(SingleTaskStep):
    """Frames read from a trajectory file; the key follows the file's content, not its path."""

    kind: ClassVar[str] = "initial_file"
    version: ClassVar[int] = 1
    task: ClassVar[str] = "read"

    settings: InitialFile = hashed_as_fields(omit=("kind",))
    path: str = not_hashed(description="the file, resolved")
    sha256: str

    @classmethod
    def from_spec(cls, spec: CampaignSpec, base: Path) -> InitialFileStep:
        """The step of the spec's ``initial_data`` (its path relative to ``base``, the spec's folder)."""
        from ilcampaign.archive.atomic import sha256_file

        section = spec.initial_data
        path = (base / section.path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"initial_data.path: no file {path}")
        return cls(settings=section, path=str(path), sha256=sha256_file(path))

    def run_task(self, ctx: StepContext, task_id: str) -> TaskResult:
        from ase.io import read

        from ilcampaign.archive.atomic import sha256_file

        if sha256_file(self.path) != self.sha256:
            raise StepFailed(f"{self.path} changed since the campaign was planned; run again")
        settings = self.settings
        frames = read(self.path, index=f"::{settings.every}", format=settings.format)[: settings.max_frames]
        for index, frame in enumerate(frames):
            frame.calc = None
            frame.info.update(source="initial_file", index=index)
        return TaskResult(frames, {"n_frames": len(frames)})
