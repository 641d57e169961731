"""Spec loading: every kind of bad spec names file, line, column, field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from ilcampaign.campaign.loader import SpecError, SpecProblem, dump_spec, load_spec
from ilcampaign.campaign.spec.registry import REFERENCE_METHODS

# line numbers of BASE, as the tests below rely on them:
#  1 campaign:         5   ions:              9     - name: BF4           13 reference:
#  4 system:           8       count: 4      10       smiles: "F[B-]..."   14   kind: xtb
#  7       smiles: ... 11       count: 4      12   density: 1.21 g/cm^3
BASE = """\
campaign:
  name: demo
  seed: 42
system:
  ions:
    - name: BMIM
      smiles: "CCCCn1cc[n+](C)c1"
      count: 4
    - name: BF4
      smiles: "F[B-](F)(F)F"
      count: 4
  density: 1.21 g/cm^3
reference:
  kind: xtb
"""


def write(tmp_path: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def edited(old: str, new: str) -> str:
    """BASE with one exact edit (fails loudly if ``old`` is not in BASE)."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def problems(path: Path) -> list[SpecProblem]:
    """The problems load_spec reports for ``path``; checks the rendering carries no traceback."""
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert "Traceback" not in text and "errors.pydantic.dev" not in text and "Value error" not in text
    assert text == info.value.format()
    return info.value.problems


def only(path: Path) -> SpecProblem:
    found = problems(path)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- valid specs


def test_minimal_spec_loads(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert [ion.name for ion in spec.system.ions] == ["BMIM", "BF4"]
    assert spec.reference.kind == "xtb"
    assert spec.system.density == pytest.approx(1.21 * 0.602214076, rel=1e-6)  # g/cm^3 -> amu/A^3


@pytest.mark.parametrize(
    "text",
    [
        BASE,
        edited("  kind: xtb\n", "  kind: cp2k\n  cutoff: 600 Ry\n  d3: null\n")
        + "initial_data:\n  kind: rattle\n  stdev: 0.1 A\nfailures:\n  on_failure: skip\n",
    ],
    ids=["xtb", "cp2k-rattle"],
)
def test_dump_spec_round_trips(tmp_path, text):
    spec = load_spec(write(tmp_path, text))
    dumped = dump_spec(spec)
    assert "packing_density: 1.21 g/cm^3" in dumped  # defaults are filled in, with units
    again = load_spec(write(tmp_path, dumped, "dumped.yaml"))
    assert again == spec
    assert dump_spec(again) == dumped


# --------------------------------------------------------------------------- reading the file


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, edited('"F[B-](F)(F)F"', '"F[B-](F)(F)F'))  # unclosed quote on line 10
    problem = only(path)
    assert (problem.file, problem.line, problem.column) == (str(path), 15, 1)
    assert "YAML syntax error" in problem.message and "started at line 10" in problem.message
    problem = only(write(tmp_path, edited("  seed: 42", " seed: 42")))  # bad indentation
    assert (problem.line, problem.column) == (3, 2)
    assert "tabs" in only(write(tmp_path, edited("  kind: xtb", "\tkind: xtb"))).hint


def test_duplicate_key(tmp_path):
    text = edited("      count: 4\n    - name: BF4", "      count: 4\n      count: 5\n    - name: BF4")
    problem = only(write(tmp_path, text))
    assert (problem.line, problem.column) == (9, 7)  # the second occurrence
    assert problem.field_path == "system.ions[0].count"
    assert problem.message == "duplicate key 'count'"
    problem = only(write(tmp_path, BASE + "system:\n  density: 1.3\n"))
    assert (problem.line, problem.column, problem.field_path) == (15, 1, "system")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no content"),
        ("# only\n# comments\n", "has no content"),
        ("- campaign\n- system\n", "the top level must be a mapping of sections, got a list"),
        ("just text\n", "the top level must be a mapping of sections, got 'just text'"),
        (b"campaign:\x00\x01\x02\n", "is a binary file"),
        ("name: d\xe9mo\n".encode("latin-1"), "is a binary file"),  # not UTF-8
        ("campaign:\n  name: de\x07mo\n", "unacceptable character #x0007"),
    ],
    ids=["empty", "comments", "list", "scalar", "nul", "latin-1", "control-char"],
)
def test_unusable_files(tmp_path, content, message):
    problem = only(write(tmp_path, content))
    assert message in problem.message
    assert problem.file == str(tmp_path / "spec.yaml")


def test_missing_file_and_directory(tmp_path):
    missing = only(tmp_path / "nope.yaml")
    assert (missing.line, missing.message) == (0, "no such file")
    assert missing.format().startswith(f"{tmp_path / 'nope.yaml'}: no such file\n  hint: ")
    assert only(tmp_path).message == "is a directory, not a spec file"


# --------------------------------------------------------------------------- validation


def test_unknown_key_suggests_nearest(tmp_path):
    path = write(tmp_path, edited("  density:", "  densty:"))
    unknown = [p for p in problems(path) if p.field_path == "system.densty"][0]
    assert (unknown.line, unknown.column) == (12, 3)  # the key, not its value
    assert unknown.message == "unknown key 'densty'"
    assert unknown.hint.startswith("did you mean 'density'?")
    assert "ions, density, packing_density, packmol_tolerance" in unknown.hint


def test_unknown_key_inside_union_variant(tmp_path):
    problem = only(write(tmp_path, edited("  kind: xtb\n", "  kind: cp2k\n  cutof: 800 Ry\n")))
    assert (problem.line, problem.column, problem.field_path) == (15, 3, "reference.cutof")  # no 'cp2k' tag
    assert problem.hint.startswith("did you mean 'cutoff'?")
    assert "rel_cutoff" in problem.hint  # keys of the cp2k variant, not of xtb


def test_unknown_kind_lists_kinds(tmp_path):
    problem = only(write(tmp_path, edited("  kind: xtb", "  kind: cpk2")))
    assert (problem.line, problem.column, problem.field_path) == (14, 9, "reference.kind")
    assert problem.message == "unknown kind 'cpk2'"
    assert problem.hint == f"did you mean 'cp2k'? kind must be one of: {', '.join(sorted(REFERENCE_METHODS.names()))}"
    problem = only(write(tmp_path, edited("  kind: xtb", "  method: GFN1-xTB")))
    assert (problem.line, problem.field_path) == (14, "reference")
    assert ", ".join(sorted(REFERENCE_METHODS.names())) in problem.hint


def test_wrong_type(tmp_path):
    problem = only(write(tmp_path, edited("      count: 4\n    - name: BF4", "      count: four\n    - name: BF4")))
    assert (problem.line, problem.column, problem.field_path) == (8, 14, "system.ions[0].count")
    assert "valid integer" in problem.message and problem.message.endswith("got 'four'")
    problem = only(write(tmp_path, edited("reference:\n  kind: xtb", "reference: xtb")))
    assert (problem.line, problem.column) == (13, 12)
    assert problem.message.startswith("expected a mapping")


def test_out_of_range(tmp_path):
    problem = only(write(tmp_path, edited("      count: 4\n    - name: BF4", "      count: 0\n    - name: BF4")))
    assert (problem.line, problem.column, problem.field_path) == (8, 14, "system.ions[0].count")
    assert problem.message == "Input should be greater than or equal to 1, got 0"
    problem = only(write(tmp_path, edited("1.21 g/cm^3", "-1")))
    assert (problem.line, problem.column, problem.field_path) == (12, 12, "system.density")
    assert problem.message == "Input should be greater than 0, got -1"  # as written, not converted


def test_literal_suggests_nearest(tmp_path):
    problem = only(write(tmp_path, edited("  kind: xtb", "  kind: xtb\n  method: GFN2-xtb")))
    assert (problem.line, problem.field_path) == (15, "reference.method")
    assert problem.hint == "did you mean 'GFN2-xTB'?"


def test_missing_required_key(tmp_path):
    problem = only(write(tmp_path, edited("  density: 1.21 g/cm^3\n", "")))
    assert (problem.line, problem.column, problem.field_path) == (4, 1, "system.density")  # the `system:` line
    assert problem.message == "required key 'density' is missing"
    assert problem.hint.startswith("add `density:`")
    problem = only(write(tmp_path, edited("      count: 4\n    - name: BF4", "    - name: BF4")))
    assert (problem.line, problem.field_path) == (6, "system.ions[0].count")  # the list item
    problem = only(write(tmp_path, BASE.split("system:")[0]))
    assert (problem.line, problem.field_path, problem.hint) == (1, "system", "add `system:` at the top level")


def test_invalid_smiles(tmp_path):
    problem = only(write(tmp_path, edited('"F[B-](F)(F)F"', '"C1CC"')))
    assert (problem.line, problem.column, problem.field_path) == (10, 15, "system.ions[1].smiles")
    assert problem.message.startswith("RDKit cannot parse the SMILES 'C1CC'")


def test_non_neutral_ions(tmp_path):
    problem = only(write(tmp_path, edited('(F)F"\n      count: 4', '(F)F"\n      count: 3')))
    assert (problem.line, problem.column, problem.field_path) == (5, 3, "system.ions")  # the `ions:` key
    assert "net charge of +1" in problem.message


def test_nested_validator_error_is_one_line(tmp_path):
    problem = only(write(tmp_path, BASE + "failures:\n  retry_with:\n    - bogus: 1\n"))
    assert (problem.line, problem.field_path) == (15, "failures")
    assert "retry_with[0] is not a valid xtb override" in problem.message and "\n" not in problem.message


def test_rendering(tmp_path):
    path = write(tmp_path, edited("  kind: xtb\n", "  kind: cp2k\n  cutof: 800 Ry\n"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}:15:3: reference.cutof: unknown key 'cutof'"
    assert lines[1].startswith("  hint: did you mean 'cutoff'? valid keys here: kind, functional,")
    assert len(lines) == 2
