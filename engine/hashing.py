"""Step keys: a hash of a step's kind, implementation version, canonical parameters and input keys.

Nothing else goes in: no timestamps, paths or package versions, so the same spec gives the same
keys on any machine. Canonical means key order ignored, floats rounded to 12 significant digits
with integral values written as integers (``800`` and ``800.0`` agree), and fields marked
``hashed: False`` (executables, thread counts) left out, as are fields added later
(``added_option``) while they hold their default. A spec section a step holds with
``hashed_as_fields`` hashes as if its fields were the step's own; one held with ``hashed_without`` hashes without the fields named (those that do not change what the step computes).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from pydantic import BaseModel, Field

from ilcampaign.campaign.spec.base import UNLESS_DEFAULT


def hashed_as_fields(*, omit: tuple[str, ...] = ()) -> Any:
    """A field holding a spec section whose fields (but ``omit``) hash as the step's own fields, as
    if the step had copied them one by one: a step that takes its whole section keeps its key."""
    return Field(json_schema_extra={"hashed_as_fields": list(omit)})


def hashed_without(*names: str) -> Any:
    """A field holding a spec section that hashes without its fields ``names``: settings of the section
    that do not change what this step computes (a D3 label shift and D3's time step in MD)."""
    return Field(json_schema_extra={"hashed_without": list(names)})


def is_hashed(model: type[BaseModel], field: str) -> bool:
    """False for fields declared with ``json_schema_extra={"hashed": False}``."""
    extra = model.model_fields[field].json_schema_extra
    return not (isinstance(extra, dict) and extra.get("hashed") is False)


def canonical(value: Any) -> Any:
    """A JSON-ready, order- and representation-independent form of ``value``."""
    if isinstance(value, BaseModel):
        cls = type(value)
        fields: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            item = getattr(value, name)
            if "hashed_as_fields" in extra:
                section = canonical(item)
                fields |= {key: entry for key, entry in section.items() if key not in extra["hashed_as_fields"]}
            elif "hashed_without" in extra:
                section = canonical(item)
                fields[name] = ({key: entry for key, entry in section.items() if key not in extra["hashed_without"]}
                                if isinstance(section, dict) else section)
            elif is_hashed(cls, name) and not (extra.get("hashed") == UNLESS_DEFAULT and item == field.default):
                fields[name] = canonical(item)
        return fields
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        rounded = float(f"{value:.12g}")
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
    raise TypeError(f"cannot hash a value of type {type(value).__name__}")


def digest(payload: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``payload``."""
    text = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def step_key(kind: str, version: int, params: BaseModel, inputs: dict[str, str]) -> str:
    """The content key of a step."""
    return digest({"kind": kind, "version": version, "params": params, "inputs": inputs})
