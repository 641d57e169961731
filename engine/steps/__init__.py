"""Step kinds, one module each, named as in the spec; importing this fills the registry."""

from engine.steps import initial_data, label, pack  # noqa: F401
