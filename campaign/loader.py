"""Loading spec YAML files, with errors that name file, line, column, field and a fix.

ruamel.yaml's round-trip loader keeps every node's position, so each pydantic error location
(``system.ions[1].smiles``) is mapped back to the place in the file the author wrote it.

Aliases (``*name``) are counted before anything is built: a file whose aliases would expand it
beyond MAX_NODES values (an "alias bomb", doubling with every line) is refused at the alias that
crosses the bound, in time linear in the file's length.
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.reader import ReaderError

from ilcampaign.campaign.spec import CampaignSpec, Problem

Loc = tuple[Any, ...]

#: values (scalars and collections) a spec may hold with its aliases expanded; specs hold hundreds
MAX_NODES = 100_000


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec file: 1-based line and column (0 when the file has no such place)."""

    file: str
    line: int
    column: int
    field_path: str
    message: str
    hint: str = ""
    warning: bool = False

    def format(self) -> str:
        """``file:line:column: field: message`` (``warning:`` before a warning's message), then an
        indented ``hint:`` line if there is one."""
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        what = f"warning: {self.message}" if self.warning else self.message
        text = f"{where}: {self.field_path + ': ' if self.field_path else ''}{what}"
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


class SpecError(Exception):
    """A spec file that cannot be used; ``str()`` lists every problem (never a traceback)."""

    def __init__(self, problems: list[SpecProblem]):
        super().__init__(problems)
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))

    def format(self) -> str:
        """One problem per line (and its hint), in file order."""
        return "\n".join(problem.format() for problem in self.problems)

    def __str__(self) -> str:
        return self.format()


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a spec file; any problem with it raises SpecError."""
    file = str(path)
    data = _read_yaml(Path(path), file)
    try:
        spec = CampaignSpec.model_validate(_plain(data))
    except ValidationError as exc:
        raise SpecError([_problem(error, data, file) for error in exc.errors()]) from None
    problems = [problem for problem in spec.problems() if not problem.warning]
    if problems:
        raise SpecError([_located(problem, data, file) for problem in problems])
    return spec


def locate(path: str | Path, problems: list[Problem]) -> list[SpecProblem]:
    """``problems`` of the spec at ``path`` (found after loading it, e.g. by the engine) placed at
    the lines they name, in file order."""
    data = _read_yaml(Path(path), str(path), count_aliases=False)  # placing problems expands no alias
    return sorted((_located(problem, data, str(path)) for problem in problems), key=lambda p: (p.line, p.column))


def dump_spec(spec: CampaignSpec) -> str:
    """The fully resolved spec as YAML: defaults filled in, quantities as "value unit" strings."""
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    yaml.dump(spec.model_dump(mode="json"), stream)
    return stream.getvalue()


# --------------------------------------------------------------------------- reading


def _read_yaml(path: Path, file: str, *, count_aliases: bool = True) -> dict[str, Any]:
    """The file's top-level mapping (ruamel round-trip nodes, which know their positions, and share
    what aliases repeat); ``count_aliases``: refuse a file whose aliases expand it beyond MAX_NODES."""

    def fail(message: str, hint: str = "", line: int = 0, column: int = 0, field_path: str = "") -> SpecError:
        return SpecError([SpecProblem(file, line, column, field_path, message, hint)])

    if path.is_dir():
        raise fail("is a directory, not a spec file", "pass the YAML file itself, e.g. specs/demo.yaml")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise fail("no such file", "check the path; example specs are in specs/") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror}") from None
    try:
        if b"\0" in raw:
            raise UnicodeError
        text = raw.decode("utf-8")
    except UnicodeError:
        raise fail("is a binary file, not YAML text", "a spec is a UTF-8 text file") from None
    try:
        alias = _alias_beyond_bound(text) if count_aliases else None
        if alias is not None:
            raise fail(f"the aliases expand the spec to more than {MAX_NODES:,} values",
                       "write the section out, or nest fewer aliases (*name) of aliases",
                       alias.start_mark.line + 1, alias.start_mark.column + 1)
        data = YAML(typ="rt").load(text)
    except DuplicateKeyError as exc:
        match = re.search(r'duplicate key "(.*)" with value', exc.problem or "")
        key = match.group(1) if match else ""
        mark = exc.problem_mark
        raise fail(
            f"duplicate key {key!r}",
            "a key may appear only once in a section; delete or merge one of them",
            mark.line + 1,
            mark.column + 1,
            _duplicate_path(text, exc.context_mark, key),
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark:
            message += f" ({exc.context}, started at line {exc.context_mark.line + 1})"
        hint = "check indentation, colons and quotes here"
        if "'\\t'" in message:
            hint = "indent with spaces: YAML does not allow tabs"
        raise fail(message, hint, mark.line + 1, mark.column + 1) from None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise fail(f"unacceptable character #x{exc.character:04x} ({exc.reason})", "", line, column) from None
    if data is None:
        raise fail("has no content (empty or only comments)", "start from specs/demo.yaml", 1, 1)
    if not isinstance(data, dict):
        raise fail(
            f"the top level must be a mapping of sections, got {_shown(data)}",
            "a spec starts with `campaign:` and `system:` sections",
            1,
            1,
        )
    return data


def _alias_beyond_bound(text: str) -> AliasEvent | None:
    """The alias at which the document, its aliases expanded, first holds more than MAX_NODES values
    (None if it never does): each anchor's expanded size is counted once, from the parser's events."""
    sizes: dict[str, int] = {}
    open_collections: list[tuple[str | None, int]] = []  # (anchor, values counted when it opened)
    total = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, AliasEvent):
            total += sizes.get(str(event.anchor), 1)  # an unknown alias is the loader's to report
            if total > MAX_NODES:
                return event
        elif isinstance(event, ScalarEvent):
            total += 1
            if event.anchor:
                sizes[str(event.anchor)] = 1
        elif isinstance(event, CollectionStartEvent):
            total += 1
            open_collections.append((event.anchor, total))
        elif isinstance(event, CollectionEndEvent):
            anchor, opened = open_collections.pop()
            if anchor:
                sizes[str(anchor)] = total - opened + 1
    return None


def _plain(node: Any) -> Any:
    """The YAML tree with plain dicts and lists, so no ruamel container ends up in free-form fields."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _duplicate_path(text: str, mapping_mark: Any, key: str) -> str:
    """Field path of a duplicated key: reload allowing duplicates and find the mapping it is in."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True
    try:
        found = _find_mapping(yaml.load(text), (mapping_mark.line, mapping_mark.column), ())
    except MarkedYAMLError:  # another construction error further down: keep the bare key
        return key
    return _dotted((*found, key)) if found is not None else key


def _find_mapping(node: Any, start: tuple[int, int], loc: Loc) -> Loc | None:
    """Location of the mapping that starts at ``start`` (0-based line, column), if any."""
    if isinstance(node, dict) and (node.lc.line, node.lc.col) == start:
        return loc
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found = _find_mapping(child, start, (*loc, key))
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- validation errors


def _problem(error: dict[str, Any], data: dict[str, Any], file: str) -> SpecProblem:
    """Turn one pydantic error into a SpecProblem placed at its YAML node."""
    loc, owner, model, variants = _resolve(tuple(error["loc"]))
    loc = _as_written(loc, data)
    kind, ctx = error["type"], error.get("ctx") or {}
    message = _clean(str(error["msg"]))
    hint, at_key = "", False
    if kind in ("extra_forbidden", "invalid_key"):
        section = owner if isinstance(loc[-1], str) else model  # an int key reads as a list index
        valid = list(section.model_fields) if section else []
        message, hint, at_key = f"unknown key {loc[-1]!r}", _suggest(str(loc[-1]), valid, "valid keys here"), True
    elif kind == "missing":
        field = owner.model_fields[loc[-1]] if owner else None
        what = f" ({field.description})" if field and field.description else ""
        under = f"under `{_dotted(loc[:-1])}`" if loc[:-1] else "at the top level"
        message, hint = f"required key {loc[-1]!r} is missing", f"add `{loc[-1]}:`{what} {under}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = [str(tag) for tag in variants]
        if kind == "union_tag_invalid":
            tag = str(ctx["tag"])
            message, hint = f"unknown kind {tag!r}", _suggest(tag, tags, "kind must be one of")
            loc = (*loc, "kind")
        else:
            message, hint = "`kind:` is missing", f"add `kind:` with one of: {', '.join(tags)}"
    elif kind == "value_error" and model is not None:
        # raised by a model validator: point at the field its message names first, if any
        named = _named_field(message, model)
        loc, at_key = ((*loc, named), True) if named else (loc, False)
    elif kind != "value_error":
        found, value = _value(data, loc)
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            message = "expected a mapping (indented `key: value` lines)"
        if found:
            message += f", got {_shown(value)}"
        if kind == "literal_error" and isinstance(value, str):
            hint = _suggest(value, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))), "")
    line, column = _position(data, loc, at_key)
    return SpecProblem(file, line, column, _dotted(loc), message, hint)


def _located(problem: Problem, data: dict[str, Any], file: str) -> SpecProblem:
    """A cross-section problem placed at the key it names (or the deepest part the file has)."""
    loc = _as_written(problem.loc, data)
    line, column = _position(data, loc, at_key=True)
    return SpecProblem(file, line, column, _dotted(loc), problem.message, problem.hint, problem.warning)


def _resolve(loc: Loc) -> tuple[Loc, type[BaseModel] | None, type[BaseModel] | None, dict[Any, type[BaseModel]]]:
    """Drop the union tags pydantic puts in a loc (``reference.cp2k.cutof`` -> ``reference.cutof``).

    Also returns the model owning the loc's last key, the model found at the loc (None where the
    loc is not a section) and, where the loc is a discriminated union, its variants by tag;
    tagged variants are followed so suggestions use the right fields. List items and the values
    of keyed mappings (``samplers.nvt``) have the type of their container's items.
    """
    kept: list[Any] = []
    owner: type[BaseModel] | None = None
    model: type[BaseModel] | None = CampaignSpec
    variants: dict[Any, type[BaseModel]] = {}
    item = False  # the next part is a list index or a mapping key
    for part in loc:
        if isinstance(part, int) or item:  # a list index or a mapping's key (which may equal a tag)
            kept.append(part)
            item = False
            continue
        if part in variants:  # the tag right after a discriminated-union field
            model, variants = variants[part], {}
            continue
        kept.append(part)
        owner = model
        field = model.model_fields.get(part) if model else None
        item = field is not None and get_origin(field.annotation) is dict
        models = _models(field.annotation) if field else []
        model = models[0] if len(models) == 1 else None
        variants = {_tag(m): m for m in models} if len(models) > 1 else {}
    return tuple(kept), owner, model, variants


def _as_written(loc: Loc, data: Any) -> Loc:
    """Drop the ``0`` of a one-item list written as a plain mapping (``selection: {n: 4}``)."""
    kept: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part == 0 and 0 not in node:
            continue
        kept.append(part)
        found = isinstance(node, dict) and part in node or isinstance(node, list) and _is_index(part, node)
        node = node[part] if found else None
    return tuple(kept)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model inside an annotation (through Optional, list, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _tag(variant: type[BaseModel]) -> Any:
    """The ``kind`` a variant of a discriminated union is chosen by (its ``Literal``)."""
    return get_args(variant.model_fields["kind"].annotation)[0]


def _named_field(message: str, model: type[BaseModel]) -> str | None:
    """The field of ``model`` that ``message`` mentions first (``ions`` also as ``ion``)."""
    hits = []
    for name in model.model_fields:
        match = re.search(rf"\b(?:{re.escape(name)}|{re.escape(name.removesuffix('s'))})\b", message)
        if match:
            hits.append((match.start(), name))
    return min(hits)[1] if hits else None


def _value(data: Any, loc: Loc) -> tuple[bool, Any]:
    """(True, the YAML value at ``loc``) or (False, None) where the loc does not exist in the file."""
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and _is_index(part, node):
            node = node[part]
        else:
            return False, None
    return True, node


def _position(data: Any, loc: Loc, at_key: bool = False) -> tuple[int, int]:
    """1-based (line, column) of the value at ``loc`` (of its key if ``at_key``).

    Where the loc runs past the file (a missing key, a default) this is the deepest part that
    exists, given by its key: a missing key is reported at its section's ``section:`` line.
    """
    line, column, node = 0, 0, data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, list) and _is_index(part, node):
            line, column = node.lc.item(part)
        elif isinstance(node, dict) and part in node:
            line, column = node.lc.value(part) if last and not at_key else node.lc.key(part)
        else:
            break
        node = node[part]
    return line + 1, column + 1


def _is_index(part: Any, node: list[Any]) -> bool:
    return isinstance(part, int) and 0 <= part < len(node)


def _suggest(word: str, choices: list[str], label: str) -> str:
    """``did you mean 'x'?`` for the nearest choice, then the choices under ``label``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    mean = f"did you mean {close[0]!r}?" if close else ""
    listed = f"{label}: {', '.join(choices)}" if label and choices else ""
    return " ".join(part for part in (mean, listed) if part)


def _clean(message: str) -> str:
    """Drop pydantic's "Value error, " prefix and doc URLs; nested errors become one line."""
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    lines = (line.strip() for line in message.splitlines())
    return " ".join(line for line in lines if line and not line.startswith("For further information"))


def _shown(value: Any) -> str:
    """A YAML value as the author wrote it, short: 'four', 0, null, a mapping, a list."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def _dotted(loc: Loc) -> str:
    """``('system', 'ions', 1, 'smiles')`` -> ``system.ions[1].smiles``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text
