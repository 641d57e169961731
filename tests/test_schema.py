"""`campaign schema`: the JSON Schema of specs as users write them. Every spec the loader accepts
validates against it (jsonschema, Draft 2020-12, as the YAML language server checks), and specs
the loader refuses for their structure are refused by it too."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import pytest
from ruamel.yaml import YAML

import ilcampaign.campaign.spec
from ilcampaign.campaign.loader import SpecError, dump_spec, load_spec
from ilcampaign.campaign.schema import quantity_pattern, spec_schema
from ilcampaign.campaign.units import UNITS, to_internal
from tests.conftest import ROOT, run_cli
from tests.test_spec_errors import BASE, edited, write

SCHEMA = spec_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_errors(text: str) -> list[str]:
    """What the schema finds wrong with a spec's text (read as the loader reads it: YAML 1.2)."""
    return [f"{error.json_path}: {error.message}" for error in VALIDATOR.iter_errors(YAML(typ="safe").load(text))]


def readme_example() -> str:
    return re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


SPECS = sorted(path.name for path in (ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("name", [*SPECS, "README.md"])
def test_project_specs_validate(name):
    text = readme_example() if name == "README.md" else (ROOT / "specs" / name).read_text()
    assert schema_errors(text) == []


@pytest.mark.parametrize("name", SPECS)
def test_resolved_specs_validate(name):
    """What show-spec prints (every default, quantities in ASE units, explicit nulls) is a spec too."""
    assert schema_errors(dump_spec(load_spec(ROOT / "specs" / name))) == []


# --------------------------------------------------------------------------- valid specs, one per input form

MODELINE = "# yaml-language-server: $schema=../ilcampaign.campaign.schema.json\n"

VALID = {
    "rules: a list and a single mapping; samplers with and without kind": BASE + """\
initial_split: {n_valid: 2, n_train: 3}
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5}                 # named after its kind: no kind
      nvt: {kind: md, n_steps: 10, interval: 5}      # another name: kind picks the variant
      geometry_optimisation: {kind: geometry_optimisation, fmax: 0.1}
      initial_pool: {}
    selection:
      - {kind: all, samplers: [initial_pool]}
      - {kind: random, n: 2, samplers: [md, nvt], split: valid}
  - selection: {n: 3}
""",
    "a sampler named after one kind of another kind": BASE + """\
sampling:
  - samplers:
      md: {kind: geometry_optimisation, fmax: 0.2 eV/A}
      conformers: {n_conformers: 3, n_boxes: 2}
""",
    "partial inheriting iterations": BASE + """\
sampling:
  - name: ml1
    samplers:
      md: {n_steps: 10, interval: 5, temperature: {start: 300 K, end: 400 K}, box: {amplitude: 0.1 A, oscillations: 1}}
      opt: {kind: geometry_optimisation, fmax: 0.5}
    model: {epochs: 5, ensemble: {n_members: 3}}
  - samplers:
      md: {temperature: {end: 500 K}, box: {oscillations: 2}}   # one field of a ramp: merged
      opt: {max_steps: 5}                                        # its kind is inherited
    repeat: 2
  - samplers: {opt: null}                                        # dropped
    energy_outlier_sigma: 3
    model: {ensemble: {n_members: 4}}
""",
    "a relabel iteration, then inheritance across it": BASE + """\
sampling:
  - samplers: {md: {n_steps: 10, interval: 5}}
  - name: tighter
    relabel: {reference: {accuracy: 0.5}, splits: [train, valid]}
    model: {epochs: 3}
  - samplers: {md: {temperature: 400 K}}
  - inherit: false
    samplers: {md: {n_steps: 20, interval: 10, temperature: {start: 250, amplitude: 20 K}}}
""",
    "partial reference sections (cp2k)": edited("  kind: xtb\n", """\
  kind: cp2k
  cutoff: 600 Ry
  d3: {cutoff: 10 A}
failures:
  retry_with: [{scf: {guess: atomic}}, {cutoff: 700 Ry, scf: {max_scf: 300}}]
sampling:
  - samplers: {md: {n_steps: 10, interval: 5}}
  - relabel: {reference: {d3: null, scf: {max_scf: 50}}}
final_models:
  - {name: d3_added, d3: add, d3_cutoff: 8, model: {r_max: 6 A, learning_rates: {network: 0.001}}}
  - {name: keep, relabel: {d3: {three_body: false}}, model: {apax_extra: {anything: [1, 2]}}}
"""),
    "starts as a string and as a mapping": BASE + """\
sampling:
  - samplers:
      md: {n_steps: 10, interval: 5, start: initial_data}
      geometry_optimisation: {start: {step: iter01.md, last: 1}}
  - samplers:
      md: {start: iter01.geometry_optimisation}
""",
    "quantities as numbers and strings": MODELINE + edited("  density: 1.21 g/cm^3\n", """\
  density: 1210 kg/m^3
  packing_density: "1.0"
  packmol_tolerance: 2
""") + """\
initial_data: {kind: md, temperature: 500, timestep: 0.5fs, n_steps: 20, interval: 2}
d3: {cutoff: 0.8 nm, cn_cutoff: 15.0 bohr, skin: 0}
sampling:
  - samplers:
      md:
        ensemble: npt
        temperature: 300
        pressure: 1 atm
        timestep: 5e-1 fs
        barostat_time: 0.075 ps
        n_steps: 10
        interval: 5
        uncertainty_threshold: 800 meV/A
""",
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_specs_load_and_validate(tmp_path, name):
    load_spec(write(tmp_path, VALID[name]))
    assert schema_errors(VALID[name]) == []


# --------------------------------------------------------------------------- structurally invalid specs

ITERATION = "sampling:\n  - samplers: {md: {n_steps: 10, interval: 5}}\n"

INVALID = {
    "unknown top-level key": BASE + "checkpoint: {md_steps: 10}\n",
    "unknown key in a section": BASE + "failures: {on_failure: skip, retries: 2}\n",
    "unknown key in a sampler": BASE + "sampling:\n  - samplers: {md: {n_stepz: 10}}\n",
    "unknown key in an inheriting iteration's sampler": BASE + ITERATION + "  - samplers: {md: {temprature: 300}}\n",
    "unknown key in an inheriting iteration": BASE + ITERATION + "  - repeats: 2\n",
    "unknown key in a model override": BASE + ITERATION + "    model: {epoch: 3}\n",
    "unknown key in a nested model override": BASE + "final_models: [{name: f, model: {loss: {force: 2}}}]\n",
    "unknown key in a reference override": BASE + "final_models: [{name: f, relabel: {acuracy: 0.1}}]\n",
    "unknown key in a retry override": BASE + "failures: {retry_with: [{electronic_temp: 1000}]}\n",
    "unknown key in a selection rule": BASE + ITERATION + "    selection: {kind: bal, count: 3}\n",
    "wrong type": edited("      count: 4\n    - name: BF4", "      count: four\n    - name: BF4"),
    "wrong type of a section": BASE + "checkpoints: 1000\n",
    "a start that is a number": BASE + "sampling:\n  - samplers: {md: {start: 3}}\n",
    "out of range integer": edited("  seed: 42", "  seed: -1"),
    "out of range quantity number": edited("  density: 1.21 g/cm^3", "  density: -1.21"),
    "out of range in an override": BASE + ITERATION + "    model: {epochs: 0}\n",
    "unknown sampler kind": BASE + "sampling:\n  - samplers: {nvt: {kind: mdd}}\n",
    "a sampler of another name without kind": BASE + "sampling:\n  - samplers: {nvt: {n_steps: 10, interval: 5}}\n",
    "a null sampler in the first iteration": BASE + "sampling:\n  - samplers: {md: null}\n",
    "an incomplete ramp where nothing is inherited": BASE + ITERATION
    + "  - inherit: false\n    samplers: {md: {temperature: {end: 400 K}}}\n",
    "unknown unit": edited("  density: 1.21 g/cm^3", "  density: 1.21 g/cc"),
    "a unit of another dimension": BASE + "sampling:\n  - samplers: {md: {temperature: 300 eV}}\n",
    "unknown reference kind": edited("  kind: xtb", "  kind: xtbb"),
    "missing reference kind": edited("  kind: xtb", "  method: GFN2-xTB"),
    "missing campaign.name": edited("  name: demo\n", ""),
    "missing system": BASE.replace(BASE[BASE.index("system:"):BASE.index("reference:")], ""),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_specs_are_refused_by_schema_and_loader(tmp_path, name):
    assert schema_errors(INVALID[name]), "the schema accepts it"
    with pytest.raises(SpecError):
        load_spec(write(tmp_path, INVALID[name]))


# --------------------------------------------------------------------------- how the schema is made


@pytest.mark.parametrize("dimension", sorted(UNITS))
def test_quantity_pattern_accepts_exactly_what_the_loader_reads(dimension):
    def loads(text: str) -> bool:
        try:
            to_internal(text, dimension)
        except ValueError:
            return False
        return True

    every_unit = [unit for table in UNITS.values() for unit in table]
    samples = ["7", ".5", "1.", " -3e2 ", "+4.5E-1", "abc", "1 2", "1.5 furlong", "", "1e", "--1"]
    samples += [text.format(unit) for unit in every_unit for text in ("1.5 {}", "2{}", " -3e2  {} ", "1 {}x", "{}")]
    pattern = re.compile(quantity_pattern(dimension))
    assert any(loads(sample) for sample in samples) and not all(loads(sample) for sample in samples)
    for sample in samples:
        assert bool(pattern.search(sample)) == loads(sample), repr(sample)


def nodes(node, skip=("if",)):
    """Every schema object in ``node`` (``if`` conditions left out: they test, they do not shape)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in skip and key not in ("const", "enum", "default"):
                yield from nodes(value, skip)
    elif isinstance(node, list):
        for value in node:
            yield from nodes(value, skip)


def reachable(node) -> list[dict]:
    """Every schema object in ``node`` and in the definitions it refers to, transitively."""
    seen, found, todo = set(), [], [node]
    while todo:
        for inner in nodes(todo.pop()):
            found.append(inner)
            name = inner.get("$ref", "").rsplit("/", 1)[-1]
            if name and name not in seen:
                seen.add(name)
                todo.append(SCHEMA["$defs"][name])
    return found


def properties(shape: dict) -> dict:
    """The properties of a section's schema (also where it takes a shorthand: anyOf value or mapping)."""
    return next((s["properties"] for s in [shape, *shape.get("anyOf", [])] if "properties" in s), {})


def test_every_model_field_is_in_the_schema():
    defs = SCHEMA["$defs"]
    sections = {name: getattr(ilcampaign.campaign.spec, name) for name in defs if name in ilcampaign.campaign.spec.__all__}
    assert {"CP2K", "Iteration", "MDSettings", "TemperatureRamp", "Start"} <= set(sections)
    for name, model in sections.items():
        for shape in (defs[name], defs.get(f"Partial{name}", defs[name])):
            assert set(properties(shape)) == set(model.model_fields), name
    assert set(SCHEMA["properties"]) == set(ilcampaign.campaign.spec.CampaignSpec.model_fields)


def test_inheriting_iterations_and_overrides_require_nothing_and_refuse_unknown_keys():
    defs = SCHEMA["$defs"]
    overrides = [defs["Iteration"]["properties"]["model"], defs["Relabel"]["properties"]["reference"],
                 defs["FinalModel"]["properties"]["relabel"], defs["Failures"]["properties"]["retry_with"]]
    for root in [defs["PartialIteration"], *overrides]:
        shapes = reachable(root)
        assert not [shape for shape in shapes if "required" in shape or "oneOf" in shape]
        objects = [shape for shape in shapes if "properties" in shape]
        assert objects and all(shape.get("additionalProperties", True) is not True for shape in objects)
    complete = reachable(defs["Iteration"]["properties"]["samplers"])
    assert any(shape.get("required") == ["kind"] for shape in complete)  # where nothing is inherited: a tag
    assert any(shape.get("required") == ["start"] for shape in complete)  # and complete ramps


def test_only_raw_apax_settings_are_free_form():
    """A new free-form mapping is either a partial section (list it in ilcampaign.campaign.schema.OVERRIDES)
    or meant to take anything (list it here)."""
    sections = [("CampaignSpec", SCHEMA), *SCHEMA["$defs"].items()]
    free = {f"{name.removeprefix('Partial')}.{field}" for name, section in sections
            for field, prop in properties(section).items()
            if any(node.get("additionalProperties") is True for node in nodes(prop, skip=()))}
    assert free == {"ApaxModel.apax_extra", "StandIn.mirrors"}  # raw apax config; a whole reference section


def test_schema_imports_no_science_library():
    """`campaign schema` stays quick: making the schema loads no science library."""
    heavy = "{'rdkit', 'torch', 'jax', 'ase', 'numpy', 'engine'}"
    code = ("import sys; from ilcampaign.campaign.schema import spec_schema; spec_schema(); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the command


def test_schema_command_prints_it_and_writes_the_same_file(tmp_path):
    printed = run_cli("schema")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == SCHEMA
    written = run_cli("schema", "--output", tmp_path / "ilcampaign.campaign.schema.json")
    assert written.returncode == 0 and written.stdout == ""
    assert (tmp_path / "ilcampaign.campaign.schema.json").read_text() == printed.stdout
    failed = run_cli("schema", "--output", tmp_path / "missing" / "schema.json")
    assert failed.returncode == 1 and "cannot write" in failed.stderr and "Traceback" not in failed.stderr
