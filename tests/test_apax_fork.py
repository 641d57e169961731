"""``resumable_fit`` and ``jitted_create_params`` are forks of apax 0.14.0's functions: a different
apax (pyproject pins 0.14.0) must fail here, clearly, not change trainings silently."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from importlib.metadata import version

from ilcampaign.engine.models.training import FORKED_SOURCES


def test_the_installed_apax_is_the_one_resumable_fit_forks():
    changed = []
    for dotted, digest in FORKED_SOURCES.items():
        module, name = dotted.rsplit(".", 1)
        source = inspect.getsource(getattr(importlib.import_module(module), name))
        if hashlib.sha256(source.encode()).hexdigest() != digest:
            changed.append(dotted)
    assert not changed, (
        f"apax {version('apax')} changed {', '.join(changed)} since ilcampaign forked them from apax 0.14.0 "
        "(engine/models/training.py: resumable_fit, jitted_create_params): port the change into the fork, "
        "check tests/test_training_resume.py, then update FORKED_SOURCES and the pin in pyproject.toml")
