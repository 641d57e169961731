"""The campaign manifest: the spec as written and the step graph it resolves to, as plain JSON.

`campaign run` stores it in the archive so that reports can tell done, stale and not-run steps
and show the spec on any machine, and provenance and deposits can cite it, from the archive alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ilcampaign.campaign.spec import CampaignSpec
from ilcampaign.engine.graph import Node
from ilcampaign.engine.hashing import digest

FORMAT = 1


def campaign_manifest(spec: CampaignSpec, path: Path, nodes: list[Node]) -> dict[str, Any]:
    """The manifest of ``spec`` (read from ``path``) resolved to ``nodes``.

    Its ``key`` hashes the step keys in order, so it changes exactly when some step would.
    """
    text = Path(path).read_text(encoding="utf-8")
    steps = [
        {"name": node.name, "key": node.key, "kind": node.step.kind, "group": node.group,
         "inputs": dict(node.inputs), "notes": node.notes}
        for node in nodes
    ]
    info = spec.campaign
    return {
        "format": FORMAT,
        "name": info.name,
        "description": info.description,
        "authors": [author.model_dump(mode="json") for author in info.authors],
        "citation": info.citation.model_dump(mode="json") if info.citation else None,
        "seed": info.seed,
        "spec_file": Path(path).name,
        "spec_text": text,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "key": digest([step["key"] for step in steps]),
        "steps": steps,
    }
