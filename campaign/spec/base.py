"""What every spec section shares: unknown keys are errors, unhashed fields, merging overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors.

    Round trips go through ``model_dump(mode="json")``, which writes quantities as "value unit"
    strings, so re-validating never converts a unit twice.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)


def not_hashed(**kwargs: Any) -> Any:
    """A field that changes how a step runs but not what it computes (paths, threads)."""
    return Field(json_schema_extra={"hashed": False}, **kwargs)


#: the ``hashed`` mark of :func:`added_option`
UNLESS_DEFAULT = "unless default"


def added_option(default: Any, **kwargs: Any) -> Any:
    """A field added to a section whose default does what the section did before it: hashed only
    when it differs from the default, so the keys of existing specs stay as they were."""
    return Field(default=default, json_schema_extra={"hashed": UNLESS_DEFAULT}, **kwargs)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (dicts merge, other values replace)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def brief(exc: ValueError) -> str:
    """A nested validation error in one line: ``field: problem`` per error."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
        for e in exc.errors()
    )


def with_overrides(section: BaseModel, overrides: dict[str, Any] | None) -> Any:
    """``section`` with a partial override applied (validated as the same model); itself if none."""
    if not overrides:
        return section
    return type(section).model_validate(deep_merge(section.model_dump(mode="json"), overrides))


@dataclass(frozen=True)
class Problem:
    """A problem the models alone cannot see (it spans sections): where (a field path as a tuple,
    e.g. ``("sampling", 3, "samplers", "npt", "hybrid_d3")``), what, and how to fix it. A
    ``warning`` is shown but does not stop the campaign."""

    loc: tuple[Any, ...]
    message: str
    hint: str = ""
    warning: bool = False
