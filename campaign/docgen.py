"""Reference pages of the documentation, generated so they cannot drift: every spec field from the
JSON Schema of spec files (``campaign schema``, itself derived from the pydantic models), every CLI
command and option from the typer application, and the benchmark tables from the JSON files the
benchmark scripts write. ``docs/hooks.py`` puts them into the site when ``make docs`` builds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Schema = dict[str, Any]


def spec_reference() -> str:
    """Markdown: the top-level sections, then every section of the schema with its fields' type,
    unit, default and description."""
    from ilcampaign.campaign.schema import spec_schema

    schema = spec_schema()
    defs: dict[str, Schema] = schema["$defs"]
    parts = ["## The top level\n", _section(schema, defs)]
    for name in sorted(defs):
        section = _fields_of(defs[name])
        if section is None:  # quantities
            continue
        parts += [f"## {name}\n", _section(section, defs)]
    quantities = sorted(name for name in defs if name.endswith("Quantity"))
    parts.append("## Quantities\n")
    parts.append("A quantity is a number in its default unit or a string with a unit.\n\n" + "\n".join(
        f"- **{name.removesuffix('Quantity').lower()}**: {defs[name]['description']}" for name in quantities) + "\n")
    return "\n".join(parts)


def schema_fields() -> set[tuple[str, str]]:
    """(section, field) of every property in the schema (the top level is ``CampaignSpec``)."""
    from ilcampaign.campaign.schema import spec_schema

    schema = spec_schema()
    fields = {("CampaignSpec", field) for field in schema["properties"]}
    for name, section in schema["$defs"].items():
        fields |= {(name, field) for field in (_fields_of(section) or {}).get("properties", {})}
    return fields


def _fields_of(section: Schema) -> Schema | None:
    """The mapping form of a section (a section with a shorthand is ``anyOf`` a plain value and the
    mapping: its description then says what the plain value means); None for plain definitions."""
    if "properties" in section:
        return section
    mapping = next((option for option in section.get("anyOf", []) if "properties" in option), None)
    if mapping is None:
        return None
    shorthand = next(option for option in section["anyOf"] if option is not mapping)
    described = " ".join(filter(None, [section.get("description"), shorthand.get("description")]))
    return {**mapping, "description": described}


def _section(section: Schema, defs: dict[str, Schema]) -> str:
    lines = []
    if section.get("description"):
        lines.append(" ".join(section["description"].split()) + "\n")
    required = set(section.get("required", []))
    lines += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
    for field, prop in section["properties"].items():
        default = "required" if field in required else _value(prop.get("default", "")) if "default" in prop else ""
        description = " ".join(str(prop.get("description", "")).split())
        lines.append(f"| `{field}` | {_type(prop, defs)} | {default} | {_cell(description)} |")
    return "\n".join(lines) + "\n"


def _type(prop: Schema, defs: dict[str, Schema]) -> str:
    """A schema node's type in words, linking sections and naming a quantity's dimension."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        if name.endswith("Quantity"):
            dimension = name.removesuffix("Quantity").lower()
            unit = defs[name]["description"].split("stored in ")[-1]
            return f"{dimension} (stored in {unit})"
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " or ".join(dict.fromkeys(_type(option, defs) for option in prop[key]))
    if "const" in prop:
        return f"`{_value(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{_value(value)}`" for value in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        items = prop.get("items") or prop.get("prefixItems")
        inner = _type(items, defs) if isinstance(items, dict) else ", ".join(_type(i, defs) for i in items or [])
        return f"list of {inner}" if inner else "list"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"mapping of {_type(extra, defs)}" if isinstance(extra, dict) else "mapping"
    return str(kind)


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def cli_reference() -> str:
    """Markdown: every command of ``campaign`` with its help, arguments and options."""
    import click
    import typer.main

    from ilcampaign.campaign.cli import app

    group = typer.main.get_command(app)
    context = click.Context(group, info_name="campaign")
    parts = [f"`campaign`: {group.help}\n"]
    for name in sorted(group.commands):
        command = group.commands[name]
        sub = click.Context(command, info_name=name, parent=context)
        usage = " ".join(command.collect_usage_pieces(sub))
        parts.append(f"## `campaign {name}`\n\n```\ncampaign {name} {usage}\n```\n\n{' '.join((command.help or '').split())}\n")
        rows = []
        for param in command.params:
            if isinstance(param, click.Argument):
                rows.append(f"| `{param.human_readable_name}` | argument | {_cell(' '.join((getattr(param, 'help', '') or '').split()))} |")
            else:
                names = ", ".join(f"`{opt}`" for opt in param.opts)
                text = " ".join((param.help or "").split())
                if param.default not in (None, False) and not param.is_flag:
                    text += f" (default: {param.default})"
                rows.append(f"| {names} | option | {_cell(text)} |")
        if rows:
            parts.append("| name | kind | what |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def benchmark_tables(folder: Path) -> str:
    """Markdown: each ``benchmarks/results/*.json`` as its title, when, where and how it was run,
    then its tables."""
    parts = []
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        machine = result["machine"]
        parts.append(f"## {result['title']}\n\n{result.get('description', '')}\n\n"
                     f"Measured {result['date']} on {machine['cpu']} ({machine['cores']} cores, "
                     f"{machine['memory_gib']:.0f} GiB), commit `{result.get('commit', 'unknown')[:10]}`, with "
                     f"`{result['command']}`{' while the machine was busy: ' + result['load'] if result.get('load') else ''}.\n")
        for table in result["tables"]:
            header = table["columns"]
            rows = ["| " + " | ".join(_cell(str(cell)) for cell in row) + " |" for row in table["rows"]]
            parts.append(f"**{table['title']}**\n\n| " + " | ".join(header) + " |\n|"
                         + " --- |" * len(header) + "\n" + "\n".join(rows) + "\n")
            if table.get("note"):
                parts.append(table["note"] + "\n")
    return "\n".join(parts) or "No benchmark results yet.\n"
