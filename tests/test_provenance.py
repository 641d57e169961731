"""Provenance and citation: the Workflow Run RO-Crate of an archive, the spec's ``campaign.citation``
section, and CITATION.cff against the CFF 1.2.0 schema."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from rocrate.rocrate import ROCrate
from ruamel.yaml import YAML

from ilcampaign.archive.provenance import ro_crate
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.loader import SpecError, load_spec
from ilcampaign.engine.graph import build_graph
from ilcampaign.engine.graph.manifest import campaign_manifest
from tests.conftest import ROOT, run_cli

DEMO_ARCHIVE = ROOT / "campaigns" / "demo" / "archive"
#: from the cffconvert 2.0.0 wheel (cffconvert/schemas/1.2.0/schema.json), as published by citation-file-format
CFF_SCHEMA = Path(__file__).parent / "data" / "cff-schema-1.2.0.json"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.6",
    "https://w3id.org/ro/wfrun/workflow/0.6",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.1",
}
SOFTWARE = {"python": "3.11.7", "ilcampaign": "0.1.0", "ase": "3.29.0", "tblite": "0.8.0"}

CITATION = """\
  citation:
    title: Tiny BMIM BF4 data
    authors:
      - {name: Ada Lovelace, affiliation: Analytical Engines Ltd, orcid: 0000-0002-1825-0097}
      - name: Charles Babbage
    contact: {name: Ada Lovelace, email: ada@example.org}
    keywords: [ionic liquids]
    related_publication: {doi: 10.1039/D4FD00025K, citation: "Zills et al., Faraday Discuss. 2024"}
    funding:
      - {agency: Royal Society, grant: RS-1}
"""

TINY = """\
campaign:
  name: tiny
  seed: 7
  description: a tiny CP2K-labelled box
{citation}system:
  ions:
    - {{name: BMIM, smiles: "CCCCn1cc[n+](C)c1", count: 1}}
    - {{name: BF4, smiles: "F[B-](F)(F)F", count: 1}}
  density: 1.0 g/cm^3
  packmol_tolerance: 2.0 A
reference:
  kind: cp2k
initial_data:
  kind: rattle
  n_frames: 2
  stdev: 0.05 A
"""


def synthetic_archive(tmp_path: Path, finished: int, cp2k: str | None = None) -> Path:
    """An archive of the tiny CP2K spec (with a citation) whose first ``finished`` steps are committed
    through the Archive API with made-up outputs, plus one stale step from an earlier spec; ``cp2k``: the
    CP2K version the label steps' records give (None: it could not be read when they ran)."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.format(citation=CITATION))
    nodes = build_graph(load_spec(spec), base=tmp_path)
    archive = Archive(tmp_path / "archive")
    archive.write_manifest(campaign_manifest(load_spec(spec), spec, nodes))
    blob_source = tmp_path / "blob"
    blob_source.write_bytes(b"a model")
    commits = [("f" * 64, "pack", {})] + [(node.key, node.name, node) for node in nodes[:finished]]
    for minute, (key, name, node) in enumerate(commits):
        archive.step_dir(key).mkdir(parents=True)
        (archive.step_dir(key) / "frames.h5").write_bytes(name.encode())
        record = {
            "kind": node.step.kind if node else "pack", "params": node.step.model_dump(mode="json") if node else {},
            "inputs": node.input_keys if node else {}, "host": "test",
            "software": SOFTWARE | ({"cp2k": cp2k} if cp2k and node and node.step.kind == "label" else {}),
            "programs": [{"kind": "cp2k", "program": "CP2K", "version": cp2k, "level": "B97-3c",
                          "url": "https://www.cp2k.org"}] if node and node.step.kind == "label" else [],
            "blobs": {"model": archive.put_blob(blob_source)} if name == "label.initial_data" else {},
            "started": f"2026-01-01T00:{minute:02d}:00+00:00", "finished": f"2026-01-01T00:{minute:02d}:30+00:00",
        }
        archive.commit(key, name, record, ["frames.h5"])
    return archive.root


def graph(crate: ROCrate) -> dict[str, dict]:
    """The crate's entities by id, as JSON-LD."""
    return {entity.id: entity.properties() for entity in crate.get_entities()}


def ids(value) -> list[str]:
    return [item["@id"] for item in (value if isinstance(value, list) else [value])]


def check_actions(root: Path, out: Path) -> dict[str, dict]:
    """Every finished step of the manifest is a CreateAction with its software, inputs, outputs and times."""
    archive = Archive(root)
    crate = ROCrate(out)
    entities = graph(crate)
    assert crate.mainEntity.id == "campaign.json"
    assert "ComputationalWorkflow" in crate.mainEntity.type
    conforms = set(ids(entities["./"]["conformsTo"]))
    assert PROFILES <= conforms
    assert entities["ro-crate-metadata.json"]["conformsTo"] == {"@id": "https://w3id.org/ro/crate/1.3"}
    done = [step for step in archive.manifest()["steps"] if archive.is_done(step["key"])]
    actions = {entity["name"]: entity for entity in entities.values() if entity["@type"] == "CreateAction"}
    assert set(actions) == {step["name"] for step in done} | {f"campaign {archive.manifest()['name']}"}
    for step in done:
        record, action = archive.record(step["key"]), actions[step["name"]]
        assert (action["startTime"], action["endTime"]) == (record["started"], record["finished"])
        software = {entities[i]["name"]: entities[i].get("softwareVersion") for i in ids(action["instrument"])}
        assert record["software"].items() <= software.items()
        results = {i: entities[i]["sha256"] for i in ids(action["result"])}
        expected = {f"steps/{step['key']}/{name}": digest for name, digest in record["outputs"].items()}
        expected |= {f"blobs/{d[:2]}/{d}": d for d in record["blobs"].values()}
        assert results == expected
        inputs = [f"steps/{key}/{name}" for key in record["inputs"].values() for name in archive.record(key)["outputs"]]
        assert set(inputs) <= set(ids(action.get("object", [])))
    run = actions[f"campaign {archive.manifest()['name']}"]
    assert ids(run["instrument"]) == ["campaign.json"]
    assert set(ids(entities["./"]["mentions"])) == {action["@id"] for action in actions.values()}
    return entities


def test_crate_of_a_synthetic_archive(tmp_path):
    root = synthetic_archive(tmp_path, finished=4)
    path = ro_crate(root, root)
    assert path == root / "ro-crate-metadata.json"
    entities = check_actions(root, root)
    assert "#step-" + "f" * 64 not in entities  # a stale step of an earlier spec is not part of the run
    assert not [i for i in entities if i.startswith(("/", "file:"))]  # archive paths, never copies
    listed = sorted(p.name for p in root.iterdir())
    assert listed == ["blobs", "campaign.json", "index.json", "ro-crate-metadata.json", "steps"]

    label = next(e for e in entities.values() if e.get("name") == "label.initial_data")
    cp2k = entities["#reference-cp2k-unknown-B97-3c"]
    assert cp2k["@id"] in ids(label["instrument"]) and "softwareVersion" not in cp2k  # CP2K's version is not recorded
    assert cp2k["description"] == "CP2K's version could not be read when the step ran"
    root_entity = entities["./"]
    assert root_entity["name"] == "Tiny BMIM BF4 data"
    assert root_entity["datePublished"] == "2026-01-01T00:04:30+00:00"  # the last step's finish
    assert ids(root_entity["license"]) == ["https://spdx.org/licenses/CC-BY-4.0"]
    assert ids(root_entity["citation"]) == ["https://doi.org/10.1039/D4FD00025K"]
    ada = entities["https://orcid.org/0000-0002-1825-0097"]
    assert ada["@type"] == "Person" and entities[ada["affiliation"]["@id"]]["name"] == "Analytical Engines Ltd"
    assert ids(ada["contactPoint"]) == ["mailto:ada@example.org"] and ids(root_entity["maintainer"]) == [ada["@id"]]
    assert ids(root_entity["author"]) == [ada["@id"], "#person-charles-babbage"]
    assert entities[entities["#grant-0"]["funder"]["@id"]]["name"] == "Royal Society"



def test_crate_names_the_cp2k_version_the_label_steps_recorded(tmp_path):
    root = synthetic_archive(tmp_path, finished=4, cp2k="2023.1")
    entities = check_actions(root, ro_crate(root, root).parent)  # cp2k 2023.1 among each label step's software
    label = next(e for e in entities.values() if e.get("name") == "label.initial_data")
    cp2k = entities["#reference-cp2k-2023.1-B97-3c"]
    assert cp2k["name"] == "CP2K B97-3c" and cp2k["softwareVersion"] == "2023.1" and "description" not in cp2k
    assert {cp2k["@id"], "#software-cp2k-2023.1"} <= set(ids(label["instrument"]))
    assert "#reference-cp2k-unknown-B97-3c" not in entities

def test_crate_is_deterministic_and_leaves_out_unfinished_steps(tmp_path):
    root = synthetic_archive(tmp_path, finished=3)
    first = ro_crate(root, tmp_path / "a").read_bytes()
    assert ro_crate(root, tmp_path / "b").read_bytes() == first
    entities = check_actions(root, tmp_path / "a")
    assert not [e for e in entities.values() if e.get("name") == "label.initial_data"]


def test_crate_of_the_demo_archive(tmp_path):
    """The finished demo campaign (read only: its index and records are copied, with a manifest built from them)."""
    if not (DEMO_ARCHIVE / "index.json").exists():
        pytest.skip("campaigns/demo has not been run")
    source, archive = Archive(DEMO_ARCHIVE), Archive(tmp_path / "archive")
    index = source.index()
    records = {key: source.record(key) for key in index["steps"]}
    for key in records:
        archive.step_dir(key).mkdir(parents=True)
        shutil.copyfile(source.step_dir(key) / "record.json", archive.step_dir(key) / "record.json")
    shutil.copyfile(source.index_path, archive.index_path)
    order = sorted(records, key=lambda key: (records[key]["finished"], records[key]["started"]))
    name = {key: index["steps"][key]["name"] for key in order}
    text = (ROOT / "specs" / "demo.yaml").read_text()
    archive.write_manifest({
        "name": "demo", "description": "the demo campaign", "authors": [{"name": "ilcampaign developers"}],
        "citation": None, "spec_file": "demo.yaml", "spec_text": text,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "steps": [{"name": name[key], "key": key, "kind": records[key]["kind"],
                   "inputs": {slot: name[k] for slot, k in records[key]["inputs"].items()}} for key in order],
    })
    entities = check_actions(archive.root, Path(ro_crate(archive.root, tmp_path / "crate")).parent)
    labels = [e for e in entities.values() if e.get("description") == "label step"]
    assert labels and all("#reference-tblite-0.8.0-GFN2-xTB" in ids(e["instrument"]) for e in labels)


# --------------------------------------------------------------------------- the citation section


def test_citation_is_optional_and_validated(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.format(citation=CITATION))
    citation = load_spec(spec).campaign.citation
    assert citation.license == "CC-BY-4.0" and citation.authors[0].orcid == "0000-0002-1825-0097"
    spec.write_text(TINY.format(citation=""))
    assert load_spec(spec).campaign.citation is None
    spec.write_text(TINY.format(citation=CITATION.replace("0000-0002-1825-0097", "0000-0002-1825-009")))
    with pytest.raises(SpecError):
        load_spec(spec)


def test_bad_orcid_is_located(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.format(citation=CITATION.replace("0000-0002-1825-0097", "0000-0002-1825-009")))
    done = run_cli("validate", spec)
    assert done.returncode == 2
    line = TINY.format(citation=CITATION).splitlines().index(
        "      - {name: Ada Lovelace, affiliation: Analytical Engines Ltd, orcid: 0000-0002-1825-0097}") + 1
    assert f"{spec}:{line}:" in done.stdout + done.stderr
    assert "campaign.citation.authors[0].orcid:" in done.stdout + done.stderr


def test_citation_leaves_step_keys_unchanged(tmp_path):
    demo = ROOT / "specs" / "demo.yaml"
    text = demo.read_text()
    marker = "  authors:\n    - name: ilcampaign developers\n"
    assert marker in text
    cited = tmp_path / "demo.yaml"
    cited.write_text(text.replace(marker, marker + CITATION))
    assert load_spec(cited).campaign.citation is not None
    keys = [node.key for node in build_graph(load_spec(demo), base=demo.parent)]
    assert [node.key for node in build_graph(load_spec(cited), base=demo.parent)] == keys


def test_manifest_carries_the_citation():
    spec = ROOT / "specs" / "bmim_bf4.yaml"
    loaded = load_spec(spec)
    manifest = campaign_manifest(loaded, spec, [])
    assert manifest["citation"]["related_publication"]["doi"] == "10.1039/D4FD00025K"
    assert json.loads(json.dumps(manifest)) == manifest


def test_citation_cff_is_valid():
    schema = json.loads(CFF_SCHEMA.read_text())
    cff = YAML(typ="safe").load((ROOT / "CITATION.cff").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    assert [error.message for error in validator.iter_errors(cff)] == []
