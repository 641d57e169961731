"""The architecture, checked from the source: one import name, no import cycles (imports inside
functions count), dependencies that run one way between the top-level folders, no private names
imported across modules, every package folder installed, and step keys unchanged by refactoring."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("archive", "campaign", "engine", "publish", "references", "reports")

#: what each top-level folder may import of ours (README: spec models and archive/ import nothing
#: of ours; the engine uses both; reports/ and publish/ read the archive; the CLI sits on top)
ALLOWED = {
    "ilcampaign.campaign.spec": ("ilcampaign.campaign.spec", "ilcampaign.campaign.units"),
    "ilcampaign.campaign.units": (),
    "ilcampaign.archive": ("ilcampaign.archive",),
    "ilcampaign.engine": ("ilcampaign.engine", "ilcampaign.campaign.spec", "ilcampaign.campaign.units",
                          "ilcampaign.archive"),
    "ilcampaign.reports": ("ilcampaign.reports", "ilcampaign.archive"),
    "ilcampaign.publish": ("ilcampaign.publish", "ilcampaign.archive"),
    "ilcampaign.campaign": ("ilcampaign",),
    "ilcampaign.references": (),
}


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("ilcampaign", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("ilcampaign", *parts))
            found[name] = path
    return found


MODULES = modules()


def imports(path: Path, with_typing: bool = True) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import of ours in a file, however deep
    (with those under ``if TYPE_CHECKING:``, which never run, only if ``with_typing``)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    if not with_typing:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("ilcampaign")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ilcampaign"):
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def edges() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports when it runs (a name that is a submodule counts as
    that module; an import for type checkers only does not count)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names, _ in imports(path, with_typing=False):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES] or [module]
            graph[name] |= {target for target in targets if target in MODULES and target != name}
    return graph


def test_no_import_cycles():
    """Tarjan's strongly connected components of the import graph: every one a single module."""
    graph, index, low, stack, on_stack, cycles = edges(), {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_a_cycle_is_found(monkeypatch):
    """The check above fails on a cycle (two modules importing each other inside functions)."""
    fake = {"ilcampaign.a": {"ilcampaign.b"}, "ilcampaign.b": {"ilcampaign.a"}}
    monkeypatch.setitem(globals(), "edges", lambda: fake)
    with pytest.raises(AssertionError):
        test_no_import_cycles()


def test_dependencies_run_one_way():
    wrong = []
    for name, path in MODULES.items():
        layer = max((prefix for prefix in ALLOWED if name == prefix or name.startswith(prefix + ".")), key=len)
        for module, _, line in imports(path):
            if not any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED[layer]):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert wrong == []


def test_no_private_names_imported_across_modules():
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {n} from {module}"
             for path in MODULES.values() for module, names, line in imports(path)
             for n in names if n.startswith("_") and not n.startswith("__")]
    assert wrong == []


def test_one_import_name_everywhere():
    """Nothing imports the old top-level names (they are not installed: it would work only from the
    repository's root)."""
    old = re.compile(rf"^\s*(?:from|import) ({'|'.join(PACKAGES)})\b", re.MULTILINE)
    files = [*MODULES.values(), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("docs/**/*.py")]
    wrong = [f"{path.relative_to(ROOT)}: {match.group(0).strip()}" for path in files
             for match in old.finditer(path.read_text())]
    assert wrong == []


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert set(config["packages"]) == folders
    assert config["package-dir"] == {f"ilcampaign.{package}": package for package in PACKAGES}


def test_step_keys_of_every_shipped_spec_are_unchanged():
    """tests/data/step_keys.json holds every step key of every spec under specs/. A refactoring
    must leave them equal; a change of a spec or of what a step computes updates the file
    (``python tests/test_architecture.py``) in the same commit, with the reason in its message."""
    assert step_keys() == json.loads((ROOT / "tests/data/step_keys.json").read_text())


def step_keys() -> dict[str, dict[str, str]]:
    from ilcampaign.campaign.loader import load_spec
    from ilcampaign.engine.graph import build_graph

    keys = {}
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        keys[path.name] = {node.name: node.key for node in build_graph(load_spec(path), base=path.parent)}
    return keys


if __name__ == "__main__":
    (ROOT / "tests/data/step_keys.json").write_text(json.dumps(step_keys(), indent=1, sort_keys=True) + "\n")
