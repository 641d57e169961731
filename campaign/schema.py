"""The JSON Schema (Draft 2020-12) of spec files as users write them, for ``campaign schema``.

``CampaignSpec.model_json_schema()`` describes the resolved models; the loader accepts more:
shorthands, inheritance between iterations, partial override sections, quantities with units.
This module starts from that schema (so descriptions, defaults and new fields come from the
models) and applies one transformation per input form the models accept, each named below next
to the validator it mirrors.
"""

from __future__ import annotations

import re
from typing import Any, Callable, get_args

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ilcampaign.campaign.spec import (
    SAMPLERS,
    CampaignSpec,
    Failures,
    FinalModel,
    Iteration,
    Relabel,
    Start,
    TemperatureRamp,
)
from ilcampaign.campaign.units import DEFAULT_UNIT, UNITS, describe, dimension, from_internal

DIALECT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]

# ------------------------------------------------------------ the input forms, by the validator that reads them

#: sections that also accept one plain value, read as this field (TemperatureRamp._constant, Start._step_only)
SHORTHANDS: dict[type[BaseModel], str] = {TemperatureRamp: "start", Start: "step"}

#: list fields that also accept a single item (Iteration._one_rule)
ONE_OR_LIST: list[tuple[type[BaseModel], str]] = [(Iteration, "selection")]

#: mappings of named items in which an item named after a kind needs no ``kind:`` (Iteration._kind_from_name)
KIND_FROM_NAME: dict[tuple[type[BaseModel], str], tuple[str, ...]] = {(Iteration, "samplers"): SAMPLERS.names()}

#: free-form fields holding a partial copy of a top-level section, merged onto it (``with_overrides``
#: in CampaignSpec._fill_retries, _check_overrides and _check_final_models)
OVERRIDES: dict[tuple[type[BaseModel], str], str] = {
    (Iteration, "model"): "model",
    (FinalModel, "model"): "model",
    (Relabel, "reference"): "reference",
    (FinalModel, "relabel"): "reference",
    (Failures, "retry_with"): "reference",
}

#: an iteration that starts afresh (no inheritance, sampling.inherit_iterations): a relabel
#: iteration, or one that says ``inherit: false``; every other one after the first inherits
STARTS_AFRESH: Schema = {
    "anyOf": [{"required": ["relabel"]}, {"required": ["inherit"], "properties": {"inherit": {"const": False}}}]
}

#: a number as ``units.to_internal`` reads it in a quantity string
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def spec_schema() -> Schema:
    """The schema of every spec the loader accepts (structurally: checks that span fields are the loader's)."""
    schema = CampaignSpec.model_json_schema(mode="validation")
    defs: dict[str, Schema] = schema["$defs"]
    sections = {model: schema if model is CampaignSpec else defs[model.__name__] for model in _models(CampaignSpec)}
    for model, section in sections.items():
        for name, field in model.model_fields.items():
            prop = _map(section["properties"][name], _is_union, _require_tag)
            units = _units(field)
            if units:
                prop = _map(prop, _is_quantity, lambda node: _quantity(node, *units, field, defs))
            section["properties"][name] = prop
    for (model, name) in ONE_OR_LIST:
        sections[model]["properties"][name] = _one_or_list(sections[model]["properties"][name])
    for model, name in SHORTHANDS.items():
        defs[model.__name__] = _shorthand(defs[model.__name__], name)
    for (model, name), kinds in KIND_FROM_NAME.items():
        sections[model]["properties"][name] = _kind_from_name(sections[model]["properties"][name], kinds, defs)
    partial = _Partial(defs)
    for (model, name), section_name in OVERRIDES.items():
        shape = _without(partial(schema["properties"][section_name]), "title", "description", "default")
        described = {"description": f"a partial `{section_name}` section: every key optional"}
        sections[model]["properties"][name] = _map(
            sections[model]["properties"][name], _is_free_mapping,
            lambda node: described | _without(node, "type", "additionalProperties") | shape,
        )
    _inherit(schema, partial)
    schema["$defs"] = dict(sorted(defs.items()))
    return {"$schema": DIALECT, **schema}


# ------------------------------------------------------------ quantities (units._quantity)


def quantity_pattern(dimension: str) -> str:
    """A quantity string of ``dimension``: a number, optionally followed by one of its units."""
    units = "|".join(re.escape(unit) for unit in UNITS[dimension])
    return rf"^\s*{NUMBER}\s*(?:(?:{units})\s*)?$"


def _units(field: FieldInfo) -> tuple[str, str] | None:
    """(dimension, description) of a quantity field; None if no quantity."""
    found = dimension(field)
    return None if found is None else (found, describe(found))


def _is_quantity(node: Schema) -> bool:
    return node.get("anyOf") == [{"type": "number"}, {"type": "string"}]


def _quantity(node: Schema, dimension: str, units: str, field: FieldInfo, defs: dict[str, Schema]) -> Schema:
    """A reference to the quantity definition of ``dimension`` (made on first use), with the
    field's bounds in the default unit (bounds of numbers pass strings by)."""
    name = f"{dimension.capitalize()}Quantity"
    defs.setdefault(name, {"description": units, "anyOf": [
        {"type": "number"}, {"type": "string", "pattern": quantity_pattern(dimension)}]})
    keywords = {Gt: ("gt", "exclusiveMinimum"), Ge: ("ge", "minimum"), Lt: ("lt", "exclusiveMaximum"),
                Le: ("le", "maximum")}
    bounds = {keywords[type(item)][1]: from_internal(getattr(item, keywords[type(item)][0]), dimension,
                                                     DEFAULT_UNIT[dimension])
              for item in field.metadata if type(item) in keywords}
    described = {"description": f"{node['description']}; {units}"} if node.get("description", units) != units else {}
    kept = {key: node[key] for key in ("title", "default") if key in node}  # drops pydantic's stray "gt"
    return kept | described | {"$ref": f"#/$defs/{name}"} | bounds


# ------------------------------------------------------------ shorthands, tags and named items


def _is_union(node: Schema) -> bool:
    return "discriminator" in node and "oneOf" in node


def _require_tag(union: Schema) -> Schema:
    """A discriminated union needs its tag written (pydantic's union_tag_not_found), though each
    variant has a default for it; without it, the variants' schemas would overlap."""
    tag = union["discriminator"]["propertyName"]
    return union | {"oneOf": [variant | {"required": [tag]} for variant in union["oneOf"]]}


def _one_or_list(prop: Schema) -> Schema:
    """A list field that also takes one item."""
    meta = {key: prop[key] for key in ("title", "description", "default") if key in prop}
    return meta | {"anyOf": [prop["items"], _without(prop, *meta)]}


def _shorthand(section: Schema, name: str) -> Schema:
    """A section that also takes a plain value of its field ``name`` (not null)."""
    value = section["properties"][name]
    branches = [branch for branch in value.get("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1:
        value = branches[0]
    description = "; ".join(d for d in (f"shorthand for `{name}: <value>`", value.get("description")) if d)
    shorthand = _without(value, "title", "default") | {"description": description}
    meta = {key: section[key] for key in ("title", "description") if key in section}
    return meta | {"anyOf": [shorthand, _without(section, *meta)]}


def _kind_from_name(prop: Schema, kinds: tuple[str, ...], defs: dict[str, Schema]) -> Schema:
    """Items named after a kind: that variant unless a ``kind:`` is written; others need ``kind:``."""
    union = prop["additionalProperties"]
    tag, variants = union["discriminator"]["propertyName"], union["discriminator"]["mapping"]
    named = {}
    for kind in kinds:
        variant = defs[variants[kind].rsplit("/", 1)[-1]]
        named[kind] = {"description": f"{variant.get('description', '')}\n(named after its kind: `{tag}:` optional)",
                       "if": {"required": [tag]}, "then": union, "else": {"$ref": variants[kind]}}
    return prop | {"properties": named}


# ------------------------------------------------------------ partial sections and inheritance


class _Partial:
    """Makes partial versions of schemas: every key optional (a union's tag too), unknown keys
    still refused, sections referenced partial as well (overrides and inheritance deep-merge)."""

    def __init__(self, defs: dict[str, Schema]):
        self.defs = defs
        self.names: dict[str, str] = {}  # definition name -> its partial's name

    def __call__(self, node: Schema) -> Schema:
        partial = _without(_subschemas(node, self), "required", "discriminator", "oneOf")
        if "oneOf" in node:  # with the tag optional, several variants may match
            partial["anyOf"] = [self(variant) for variant in node["oneOf"]]
        if "$ref" in node:
            partial["$ref"] = f"#/$defs/{self.of(node['$ref'].rsplit('/', 1)[-1])}"
        return partial

    def of(self, name: str) -> str:
        """The name of the partial version of definition ``name`` (made on first use)."""
        if name in self.names.values():
            return name
        if name not in self.names:
            partial_name = self.names[name] = f"Partial{name}"
            self.defs[partial_name] = {}  # reserved first: a definition may refer to itself
            self.defs[partial_name] = self(self.defs[name])
            if self.defs[partial_name] == self.defs[name]:  # nothing required in it: the same
                del self.defs[partial_name]
                self.names[name] = name
        return self.names[name]


def _inherit(schema: Schema, partial: _Partial) -> None:
    """``sampling`` (CampaignSpec._inherit): the first iteration and those starting afresh are
    complete; the others are merged onto the previous sampling iteration, so every field is
    optional there and a sampler set to null is dropped. Leading relabel iterations are not
    followed: a first sampling iteration after them is checked as an inheriting one."""
    defs = schema["$defs"]
    complete = {"$ref": f"#/$defs/{Iteration.__name__}"}
    inheriting = partial.of(Iteration.__name__)
    samplers = defs[inheriting]["properties"]["samplers"]
    samplers["properties"] = {name: _nullable(node) for name, node in samplers["properties"].items()}
    samplers["additionalProperties"] = _nullable(samplers["additionalProperties"])
    defs[inheriting]["description"] = ("An iteration that inherits every field it does not write from the previous "
                                       "sampling iteration (all optional; a sampler set to null is dropped).")
    schema["properties"]["sampling"] |= {
        "prefixItems": [complete],
        "items": {"if": STARTS_AFRESH, "then": complete, "else": {"$ref": f"#/$defs/{inheriting}"}},
    }


def _nullable(node: Schema) -> Schema:
    return {"anyOf": [node, {"type": "null"}]}


# ------------------------------------------------------------ walking models and schemas


def _models(model: type[BaseModel], found: dict | None = None) -> dict[type[BaseModel], None]:
    """``model`` and every model its fields refer to, in order (a dict used as an ordered set)."""
    found = {} if found is None else found
    if model not in found:
        found[model] = None
        for field in model.model_fields.values():
            for inner in _types(field.annotation):
                _models(inner, found)
    return found


def _types(annotation: Any) -> list[type[BaseModel]]:
    """The models inside an annotation (through Optional, list, dict, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _types(arg)]


def _metadata(annotation: Any) -> list[Any]:
    """Every ``Annotated`` metadata item inside an annotation."""
    own = list(getattr(annotation, "__metadata__", ()))
    return own + [item for arg in get_args(annotation) for item in _metadata(arg)]


def _subschemas(node: Schema, change: Callable[[Schema], Schema]) -> Schema:
    """``node`` with ``change`` applied to each direct subschema (an ``if`` condition is left as it is)."""
    changed = dict(node)
    for key, value in node.items():
        if key in ("items", "additionalProperties", "then", "else", "not") and isinstance(value, dict):
            changed[key] = change(value)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            changed[key] = [change(item) for item in value]
        elif key in ("properties", "$defs"):
            changed[key] = {name: change(item) for name, item in value.items()}
    return changed


def _map(node: Schema, match: Callable[[Schema], bool], replace: Callable[[Schema], Schema]) -> Schema:
    """``node`` with every subschema that ``match``es replaced (and not searched further)."""
    return replace(node) if match(node) else _subschemas(node, lambda child: _map(child, match, replace))


def _is_free_mapping(node: Schema) -> bool:
    return node.get("type") == "object" and node.get("additionalProperties") is True


def _without(node: Schema, *keys: str) -> Schema:
    return {key: value for key, value in node.items() if key not in keys}
