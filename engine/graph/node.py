"""A step graph's nodes: stable names, content keys from parameters and inputs, and how a node
compares with the archive (done, stale and why, or to run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ilcampaign.archive.store import Archive
from ilcampaign.engine.hashing import canonical, step_key
from ilcampaign.engine.step import Step


@dataclass
class Node:
    """A step in the graph: its name, parameters, and the names of the steps feeding its inputs."""

    name: str
    step: Step
    inputs: dict[str, str] = field(default_factory=dict)  # input slot -> producing node's name
    group: str = "setup"
    key: str = ""
    input_keys: dict[str, str] = field(default_factory=dict)
    notes: str = ""  # shown by `plan`: e.g. the dispersion a model's labels contain


def model_node(name: str) -> str:
    """The train step of a model name (``initial``, an iteration, ``final.<name>``)."""
    return "train.initial" if name == "initial" else f"{name}.train"


def resolve_keys(nodes: list[Node]) -> list[Node]:
    """Compute every node's key from its parameters and its inputs' keys (nodes in dependency order)."""
    keys: dict[str, str] = {}
    for node in nodes:
        slots = node.step.input_slots()
        missing = set(slots) ^ set(node.inputs) if slots is not None else set()
        if missing:
            raise ValueError(f"step {node.name}: inputs {sorted(missing)} not wired")
        node.input_keys = {slot: keys[name] for slot, name in node.inputs.items()}
        node.key = step_key(node.step.kind, node.step.version, node.step, node.input_keys)
        keys[node.name] = node.key
    return nodes


def state(node: Node, archive: Archive) -> str:
    """``done``, ``stale`` (finished before with other parameters or inputs) or ``to run``."""
    if archive.is_done(node.key):
        return "done"
    return "stale" if archive.key_for_name(node.name) else "to run"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat or {prefix: []}
    return {prefix: value}


def why(node: Node, archive: Archive, nodes_by_key: dict[str, str]) -> list[str]:
    """Human-readable reasons a node is not done: changed fields (old -> new) and changed inputs."""
    if archive.is_done(node.key):
        return []
    old_key = archive.key_for_name(node.name)
    if old_key is None:
        return ["never run"]
    record = archive.record(old_key)
    reasons = []
    if record.get("version") != node.step.version:
        reasons.append(f"implementation version {record.get('version')} -> {node.step.version}")
    old, new = _flatten(record["params"]), _flatten(canonical(node.step))
    for path in sorted(set(old) | set(new)):
        if old.get(path) != new.get(path):
            reasons.append(f"field {path}: {old.get(path)!r} -> {new.get(path)!r}")
    for slot, key in node.input_keys.items():
        if record["inputs"].get(slot) != key:
            producer = nodes_by_key.get(key, key[:12])
            reasons.append(f"input {slot} changed (step {producer} now has key {key[:12]})")
    return reasons or ["the archive holds no finished step with this key"]
