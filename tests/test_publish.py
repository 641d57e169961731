"""`campaign publish` against a stand-in Dataverse (tests/dataverse_server.py): a full deposit,
resuming after a dropped upload or a lost answer to the create request, a new version of the same
dataset without the files the export no longer has, a publication that is finalised in the
background (200 and a lock), locks taken before or during a write, direct upload (single and
multipart) where the store offers it, folder names as Dataverse stores them, dry runs, the token
kept out of every file and output (and of the storage), token files, and the one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from ase.build import bulk

from ilcampaign.archive.frames import write_frames
from ilcampaign.archive.store import Archive
from ilcampaign.publish import dataverse
from ilcampaign.publish.dataverse import Client
from ilcampaign.publish.deposit import PublishError, publish
from ilcampaign.publish.metadata import MetadataError, dataset_json
from tests.conftest import run_cli
from tests.dataverse_server import Dataverse
from tests.test_export import frame, key

TOKEN = "d3adb33f-0000-4a4a-9c9c-5ecre7t0ken1"
CITATION = {
    "title": "Tiny [BMIM][BF4] campaign",
    "authors": [{"name": "Ada Lovelace", "orcid": "0000-0002-1825-0097", "affiliation": "University of Stuttgart",
                 "email": None},
                {"name": "Alan Turing", "orcid": None, "affiliation": None, "email": None}],
    "contact": {"name": "Ada Lovelace", "email": "ada@example.org"},
    "description": "A learning-on-the-fly campaign for a tiny ionic liquid box.",
    "keywords": ["ionic liquids", "machine-learned potentials"],
    "license": "CC-BY-4.0",
    "related_publication": {"doi": "10.1039/D4FD00025K", "citation": "F. Zills et al., Faraday Discuss., 2024"},
    "funding": [{"agency": "DFG", "grant": "EXC 2075"}],
}
IONS = [{"name": "BMIM", "smiles": "CCCCn1cc[n+](C)c1", "count": 1}, {"name": "BF4", "smiles": "F[B-](F)(F)F", "count": 1}]


def sampler(ensemble: str, temperature: float) -> dict:
    return {"ensemble": ensemble, "temperature": {"start": temperature, "end": None, "amplitude": 0},
            "pressure": 6.3242090697e-07, "kind": "md"}


def step(archive: Archive, name: str, kind: str, params: dict, *, trajectory: bool, finished: str) -> str:
    """Commit a step with ``params`` and, with ``trajectory``, a 4-frame trajectory.h5."""
    digest = key(name + finished)
    outputs = []
    if trajectory:
        frames = [frame(bulk("NaCl", "rocksalt", a=5.64, cubic=True)) for _ in range(4)]
        write_frames(archive.step_dir(digest) / "trajectory.h5", frames, velocities=True)
        outputs = ["trajectory.h5"]
    record = {"kind": kind, "params": params, "inputs": {}, "started": finished, "finished": finished,
              "software": {"python": "3.11.7"}, "blobs": {}}
    archive.commit(digest, name, record, outputs)
    return digest


def campaign(workdir: Path, citation: dict | None = CITATION, *, key: str = "0" * 64,
             runs: tuple[tuple[str, float], ...] = (("npt", 300.0), ("nvt", 350.0))) -> Path:
    """A work directory with a molecules step, production ``runs`` (ensemble, temperature; trajectories)
    and a manifest whose step-graph key is ``key``."""
    archive = Archive(workdir / "archive")
    keys = {"molecules": step(archive, "molecules", "molecules", {"ions": IONS}, trajectory=False,
                              finished="2026-01-01T00:00:00+00:00")}
    for second, (ensemble, temperature) in enumerate(runs, start=1):
        name = f"production.{ensemble}.{temperature:.0f}K"
        keys[name] = step(archive, name, "production", {"sampler": sampler(ensemble, temperature)}, trajectory=True,
                          finished=f"2026-01-01T00:00:{second:02d}+00:00")
    archive.write_manifest({"format": 1, "name": "tiny", "description": "", "authors": [], "citation": citation,
                            "seed": 0, "key": key, "spec_file": "spec.yaml",
                            "spec_text": "campaign:\n  name: tiny\n", "spec_sha256": "0" * 64,
                            "steps": [{"name": name, "key": digest, "kind": "md", "inputs": {}, "notes": ""}
                                      for name, digest in keys.items()]})
    return workdir


@pytest.fixture
def server(monkeypatch):
    """The stand-in (publications finalise under a lock two looks long); the client looks every 10 ms."""
    monkeypatch.setattr(Client, "poll", 0.01)
    stand_in = Dataverse(TOKEN)
    stand_in.start()
    yield stand_in
    stand_in.stop()


def fields(version: dict, block: str = "citation") -> dict:
    return {f["typeName"]: f for f in version["metadataBlocks"][block]["fields"]}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("checksum_type", ["MD5", "SHA-256"])
def test_full_publish(tmp_path, server, checksum_type):
    server.checksum_type = checksum_type
    server.collections["ilcampaign"] = ["citation", "process"]
    workdir = campaign(tmp_path / "work")
    deposit = publish(workdir, server.url, "ilcampaign", TOKEN)
    assert deposit.created and deposit.version == "DRAFT" and not deposit.released
    assert deposit.files[0].name == "tiny.h5" and len(deposit.files) == 3  # + 2 split trajectories
    assert sorted(deposit.uploaded) == sorted(p.name for p in deposit.files)
    assert not any("actions/:publish" in path for _, path in server.log)  # no --release: a draft only
    (dataset,) = server.datasets.values()
    (version,) = dataset["versions"]
    algorithm = {"MD5": "md5", "SHA-256": "sha256"}[checksum_type]
    for path in deposit.files:
        (stored,) = [f for f in version["files"] if f["label"] == path.name]
        assert stored["content"] == path.read_bytes()
        assert stored["dataFile"]["checksum"] == {"type": checksum_type,
                                                  "value": hashlib.new(algorithm, path.read_bytes()).hexdigest()}
        assert stored["directoryLabel"] == "tiny" and stored["description"]
    citation = fields(version)
    assert citation["title"]["value"] == CITATION["title"]
    ada, alan = citation["author"]["value"]
    assert ada["authorName"]["value"] == "Ada Lovelace" and ada["authorIdentifier"]["value"] == "0000-0002-1825-0097"
    assert ada["authorIdentifierScheme"]["value"] == "ORCID" and "authorIdentifier" not in alan
    assert ada["authorAffiliation"]["value"] == "University of Stuttgart"
    assert citation["datasetContact"]["value"][0]["datasetContactEmail"]["value"] == "ada@example.org"
    assert citation["dsDescription"]["value"][0]["dsDescriptionValue"]["value"] == CITATION["description"]
    assert citation["subject"] == {"typeName": "subject", "multiple": True, "typeClass": "controlledVocabulary",
                                   "value": ["Chemistry"]}
    assert [k["keywordValue"]["value"] for k in citation["keyword"]["value"]] == CITATION["keywords"]
    (publication,) = citation["publication"]["value"]
    assert publication["publicationIDType"]["value"] == "doi"
    assert publication["publicationIDNumber"]["value"] == "10.1039/D4FD00025K"
    assert citation["grantNumber"]["value"][0]["grantNumberValue"]["value"] == "EXC 2075"
    (other_id,) = citation["otherId"]["value"]  # the campaign's key: how a rerun finds this dataset
    assert (other_id["otherIdAgency"]["value"], other_id["otherIdValue"]["value"]) == ("ilcampaign", "0" * 64)
    assert version["license"]["name"] == "CC BY 4.0"
    process = json.dumps(version["metadataBlocks"]["process"])  # offered by the collection, so sent
    for text in ("SMILES CCCCn1cc[n+](C)c1", "SMILES F[B-](F)(F)F", '"300"', '"350"', "machine-learned potential"):
        assert text in process
    assert '"1.01325"' in process  # the NPT run's pressure in bar

    released = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert released.persistent_id == deposit.persistent_id and not released.created
    assert released.uploaded == [] and released.replaced == [] and len(released.unchanged) == 3
    assert released.released and released.version == "1.0"
    assert dataset["versions"][-1]["versionState"] == "RELEASED" and len(server.datasets) == 1


def test_collection_without_the_process_block_gets_citation_only(tmp_path, server):
    publish(campaign(tmp_path / "work"), server.url, "ilcampaign", TOKEN)
    (dataset,) = server.datasets.values()
    assert set(dataset["versions"][0]["metadataBlocks"]) == {"citation"}


def test_rerun_after_a_dropped_upload_sends_only_the_missing_files(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    server.drop_upload(2)
    with pytest.raises(PublishError) as failed:
        publish(workdir, server.url, "ilcampaign", TOKEN)
    message = str(failed.value)
    assert failed.value.exit_code == 1 and "\n" not in message
    assert "uploaded: tiny.h5;" in message and "run the same command again to resume" in message
    not_uploaded = message.split("not uploaded: ")[1].split(";")[0].split(", ")
    assert len(not_uploaded) == 2 and all(name.endswith(".trajectory.h5") for name in not_uploaded)
    (pid,) = server.datasets
    assert [f["label"] for f in server.datasets[pid]["versions"][-1]["files"]] == ["tiny.h5"]

    server.log.clear()
    deposit = publish(workdir, server.url, "ilcampaign", TOKEN)
    assert deposit.persistent_id == pid and not deposit.created and len(server.datasets) == 1
    assert sorted(deposit.uploaded) == sorted(not_uploaded) and deposit.unchanged == ["tiny.h5"]
    assert sum(path.endswith("/add") for _, path in server.log) == 2
    assert not any(method == "POST" and path.endswith("/datasets") for method, path in server.log)
    (version,) = server.datasets[pid]["versions"]
    assert sorted(f["label"] for f in version["files"]) == sorted(p.name for p in deposit.files)
    assert all(f["dataFile"]["md5"] == md5(workdir / "publish" / f["label"]) for f in version["files"])


def test_a_changed_campaign_becomes_a_new_version_of_the_same_dataset(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    first = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert first.version == "1.0"
    step(Archive(workdir / "archive"), "production.nvt.400K", "production", {"sampler": sampler("nvt", 400.0)},
         trajectory=True, finished="2026-01-02T00:00:00+00:00")
    server.log.clear()
    second = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert [path.rsplit("/", 1)[1] for _, path in server.log if "/api/files/" in path] == ["replace"]  # lineage
    assert second.persistent_id == first.persistent_id and len(server.datasets) == 1 and not second.created
    assert second.replaced == ["tiny.h5"] and len(second.uploaded) == 1 and len(second.unchanged) == 2
    assert second.version == "2.0"
    versions = server.datasets[first.persistent_id]["versions"]
    assert [(v["versionState"], v["versionNumber"]) for v in versions] == [("RELEASED", 1), ("RELEASED", 2)]
    assert len(versions[0]["files"]) == 3 and len(versions[1]["files"]) == 4
    again = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)  # nothing changed: nothing new
    assert again.version == "2.0" and not again.released and len(versions) == 2


def test_dry_run_and_the_token_stays_out_of_every_file_and_output(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    env_token = {"DATAVERSE_API_TOKEN": TOKEN}
    dry = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign", "--dry-run"], env_token)
    assert dry.returncode == 0, dry.stderr
    assert server.log == []  # nothing sent
    requests = json.loads((workdir / "publish" / "dry-run.json").read_text())["requests"]
    assert [(r["method"], r["url"].split("?")[0].removeprefix(server.url)) for r in requests] == [
        ("GET", "/api/dataverses/ilcampaign/metadatablocks"), ("GET", "/api/dataverses/ilcampaign/contents"),
        ("POST", "/api/dataverses/ilcampaign/datasets"), ("GET", "/api/datasets/:persistentId/versions/:latest/files"),
        *[("GET", "/api/datasets/:persistentId/locks"), ("POST", "/api/datasets/:persistentId/add")] * 3]
    assert all(r["headers"]["X-Dataverse-key"] == "***" for r in requests)
    assert requests[2]["json"]["datasetVersion"]["metadataBlocks"]["citation"]["fields"][0]["value"] == CITATION["title"]
    adds = [r for r in requests if r["url"].split("?")[0].endswith("/add")]
    assert all(r["multipart"]["jsonData"]["tabIngest"] is False for r in adds)
    uploads = [r["multipart"]["file"] for r in adds]
    for upload in uploads:
        path = workdir / "publish" / upload["name"]
        assert upload["size"] == path.stat().st_size and upload["md5"] == md5(path)
        assert upload["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    server.publish_lock_polls = 0  # the command runs in a process of its own, looking every 2 s
    real = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign", "--release",
                 "--token-file", token_file], {})
    assert real.returncode == 0, real.stderr
    assert "version 1.0" in real.stdout and len(server.datasets) == 1
    server.fail_next("/add", 500, "disk full")  # a failed run's output too
    step(Archive(workdir / "archive"), "production.nvt.400K", "production", {"sampler": sampler("nvt", 400.0)},
         trajectory=True, finished="2026-01-02T00:00:00+00:00")
    failed = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign"], env_token)
    assert failed.returncode == 1 and "disk full" in failed.stderr
    for run in (dry, real, failed):
        assert TOKEN not in run.stdout + run.stderr
    files = [path for path in workdir.rglob("*") if path.is_file()]
    assert len(files) > 8 and any(path.suffix == ".h5" for path in files)
    assert not [path for path in files if TOKEN.encode() in path.read_bytes()]


def test_errors_are_one_clear_line(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    with pytest.raises(PublishError) as refused:
        publish(workdir, server.url, "ilcampaign", "not-the-token")
    assert str(refused.value) == "the server refused the API token (401): check DATAVERSE_API_TOKEN"
    with pytest.raises(PublishError) as unknown:
        publish(workdir, server.url, "nope", TOKEN)
    assert str(unknown.value) == f"no collection 'nope' at {server.url}" and unknown.value.exit_code == 1
    server.fail_next("/datasets", 400, "Validation Failed: Point of Contact E-mail is required. "
                     "(field datasetContactEmail)")
    with pytest.raises(PublishError) as rejected:
        publish(workdir, server.url, "ilcampaign", TOKEN)
    assert "(400): Validation Failed: Point of Contact E-mail is required. (field datasetContactEmail)" in str(
        rejected.value)
    mit = campaign(tmp_path / "mit", {**CITATION, "license": "MIT"})  # the server knows no MIT license
    with pytest.raises(PublishError) as license_:
        publish(mit, server.url, "ilcampaign", TOKEN)
    assert "(400): Invalid license: MIT" in str(license_.value)
    for message in (refused, unknown, rejected, license_):
        assert "\n" not in str(message.value) and TOKEN not in str(message.value)
    assert server.datasets == {}

    with pytest.raises(PublishError) as plain:
        publish(workdir, "http://darus.example.org", "ilcampaign", TOKEN)
    assert plain.value.exit_code == 2 and "refusing to send the API token over plain http" in str(plain.value)
    http_cli = _cli(["publish", workdir, "--url", "http://darus.example.org", "--collection", "x"],
                    {"DATAVERSE_API_TOKEN": TOKEN})
    no_token = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign"], {})
    wrong = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign"],
                 {"DATAVERSE_API_TOKEN": "wrong"})
    assert (http_cli.returncode, no_token.returncode, wrong.returncode) == (2, 2, 1)
    assert "DATAVERSE_API_TOKEN" in no_token.stderr
    assert "the server refused the API token (401): check DATAVERSE_API_TOKEN" in wrong.stderr


def test_missing_metadata_names_each_field_and_the_spec_entry(tmp_path, server):
    manifest = {"name": "tiny", "description": "", "authors": [], "citation": None}
    with pytest.raises(MetadataError) as missing:
        dataset_json(manifest)
    assert [m.split(":")[0] for m in missing.value.missing] == ["title", "author", "contact with email",
                                                                "description"]
    for entry in ("campaign.citation.title", "campaign.citation.authors", "campaign.citation.contact",
                  "campaign.citation.description"):
        assert entry in str(missing.value)
    no_contact = {**CITATION, "contact": None}  # an author's email stands in for the contact
    assert "contact" in str(pytest.raises(MetadataError, dataset_json, {**manifest, "citation": no_contact}).value)
    body = dataset_json({**manifest, "citation": {**no_contact, "authors": [{"name": "A", "email": "a@b.org"}]}})
    assert '"a@b.org"' in json.dumps(body)
    bare = _cli(["publish", campaign(tmp_path / "bare", None), "--url", server.url, "--collection", "ilcampaign"],
                {"DATAVERSE_API_TOKEN": TOKEN})
    assert bare.returncode == 2 and "campaign.citation.title" in bare.stderr and server.log == []


def _cli(args: list, env: dict) -> object:
    saved = {name: os.environ.pop(name, None) for name in ("DATAVERSE_API_TOKEN",)}
    os.environ.update(env)
    try:
        return run_cli(*args)
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update({name: value for name, value in saved.items() if value is not None})


def test_a_change_before_release_swaps_the_file_in_the_same_draft(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    first = publish(workdir, server.url, "ilcampaign", TOKEN)
    step(Archive(workdir / "archive"), "production.nvt.400K", "production", {"sampler": sampler("nvt", 400.0)},
         trajectory=True, finished="2026-01-02T00:00:00+00:00")
    server.log.clear()
    second = publish(workdir, server.url, "ilcampaign", TOKEN)
    assert second.persistent_id == first.persistent_id and second.version == "DRAFT"
    assert second.replaced == ["tiny.h5"] and len(second.uploaded) == 1 and len(second.unchanged) == 2
    assert [method for method, path in server.log if "/api/files/" in path] == ["DELETE"]  # never published
    (version,) = server.datasets[first.persistent_id]["versions"]
    assert len(version["files"]) == 4
    assert all(f["content"] == (workdir / "publish" / f["label"]).read_bytes() for f in version["files"])


def test_a_lost_answer_to_the_create_request_leaves_one_dataset(tmp_path, server):
    other = publish(campaign(tmp_path / "other", key="1" * 64), server.url, "ilcampaign", TOKEN)  # another campaign
    workdir = campaign(tmp_path / "work")
    server.drop_answer("ilcampaign/datasets")  # the server creates the dataset; its answer never arrives
    with pytest.raises(PublishError) as lost:
        publish(workdir, server.url, "ilcampaign", TOKEN)
    assert "the connection to 127.0.0.1 was lost" in str(lost.value) and "run the same command again" in str(lost.value)
    assert len(server.datasets) == 2 and "datasets" not in json.loads((workdir / "publish" / "state.json").read_text())
    (created,) = set(server.datasets) - {other.persistent_id}

    server.log.clear()
    deposit = publish(workdir, server.url, "ilcampaign", TOKEN)
    assert deposit.persistent_id == created and not deposit.created and len(server.datasets) == 2
    assert not any(method == "POST" and path.endswith("/datasets") for method, path in server.log)
    assert sorted(deposit.uploaded) == sorted(path.name for path in deposit.files)
    (version,) = server.datasets[created]["versions"]
    assert sorted(f["label"] for f in version["files"]) == sorted(path.name for path in deposit.files)
    assert server.datasets[other.persistent_id]["versions"][-1]["files"][0]["directoryLabel"] == "tiny"
    assert len(server.datasets[other.persistent_id]["versions"][-1]["files"]) == 3  # the other campaign's, untouched


def test_a_file_gone_from_the_export_leaves_the_draft(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    first = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    smaller = campaign(tmp_path / "smaller", runs=(("npt", 300.0),))  # the NVT run's trajectory is gone
    server.log.clear()
    second = publish(smaller, server.url, "ilcampaign", TOKEN, release=True,
                     state_file=workdir / "publish" / "state.json")  # the same deposit
    gone = sorted({path.name for path in first.files} - {path.name for path in second.files})
    assert len(gone) == 1 and gone[0].endswith(".trajectory.h5")
    assert second.persistent_id == first.persistent_id and second.deleted == gone and second.version == "2.0"
    assert [method for method, path in server.log if "/api/files/" in path].count("DELETE") == 1
    versions = server.datasets[first.persistent_id]["versions"]
    assert sorted(f["label"] for f in versions[-1]["files"]) == sorted(path.name for path in second.files)
    assert gone[0] in [f["label"] for f in versions[0]["files"]]  # version 1.0 keeps it


def test_a_publication_is_released_only_once_its_lock_clears(tmp_path, server):
    """Dataverse answers 200 at once and finalises under a lock: the client waits, then checks RELEASED."""
    workdir = campaign(tmp_path / "work")
    draft = publish(workdir, server.url, "ilcampaign", TOKEN)
    client = Client(server.url, TOKEN)
    server.finalize_next_publish(None)
    assert client.send(dataverse.Request(  # the publish request alone: 200, and no version released yet
        "POST", f"/api/datasets/:persistentId/actions/:publish?persistentId={draft.persistent_id}&type=major"))
    assert client.latest_version(draft.persistent_id)["versionState"] == "DRAFT"  # what reading at once reported
    assert client.locks(draft.persistent_id)[0]["lockType"] == "finalizePublication"
    del server.datasets[draft.persistent_id]["lock"]  # abandoned, still a draft

    server.finalize_next_publish(3)
    server.log.clear()
    released = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert released.released and released.version == "1.0"
    after = [path.rsplit("/", 1)[1] for method, path in server.log][[p for _, p in server.log].index(
        "/api/datasets/:persistentId/actions/:publish") + 1:]
    assert after[:5] == ["locks"] * 4 + [""]  # 3 looks see the lock, the 4th finds it gone; then the version
    assert server.datasets[released.persistent_id]["versions"][-1]["versionState"] == "RELEASED"


def test_a_publication_the_server_fails_to_finalise_or_never_finishes_is_an_error(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    server.finalize_next_publish(1, released=False)  # e.g. the PID registration failed: the lock goes, a draft stays
    with pytest.raises(PublishError) as failed:
        publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    (pid,) = server.datasets
    assert str(failed.value) == (f"the publication of {pid} did not complete: its latest version is DRAFT after the "
                                 "server finished (its page and notifications say why); run the same command again")
    server.finalize_next_publish(None)  # a lock that never lifts
    with pytest.raises(PublishError) as stuck:
        publish(workdir, server.url, "ilcampaign", TOKEN, release=True, lock_timeout=0.2)
    assert str(stuck.value) == (f"the dataset {pid} is still locked (finalizePublication) after 0.2 s; "
                                "run the same command again later")
    del server.datasets[pid]["lock"]
    server.finalize_next_publish(2, workflow=True)  # a pre-publication workflow: 202, then its Workflow lock
    workflow = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert workflow.released and workflow.version == "1.0"


def test_locks_before_and_during_writes_are_waited_out(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    first = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    pid = first.persistent_id
    step(Archive(workdir / "archive"), "production.nvt.400K", "production", {"sampler": sampler("nvt", 400.0)},
         trajectory=True, finished="2026-01-02T00:00:00+00:00")
    server.lock_dataset(pid, "EditInProgress", polls=2)  # seen by the look before the first write
    server.lock_on_arrival(pid, "/add", "Ingest", polls=2)  # taken just after the look before the add
    server.log.clear()
    second = publish(workdir, server.url, "ilcampaign", TOKEN)
    assert second.replaced == ["tiny.h5"] and len(second.uploaded) == 1 and second.version == "DRAFT"
    writes = [path.rsplit("/", 1)[1] for method, path in server.log if method != "GET" or path.endswith("/locks")]
    assert writes == ["locks", "locks", "locks", "replace",  # waited for the EditInProgress lock; tiny.h5 replaced
                      "locks", "add", "locks", "locks", "locks", "add"]  # refused (400), waited for, sent again
    assert not any(lock for dataset in server.datasets.values() for lock in [dataset.get("lock")] if lock)

    smaller = campaign(tmp_path / "smaller", runs=(("npt", 300.0),))  # a trajectory to delete from the draft
    server.lock_on_arrival(pid, "/api/files/", "EditInProgress", polls=1)
    server.log.clear()
    third = publish(smaller, server.url, "ilcampaign", TOKEN, state_file=workdir / "publish" / "state.json")
    assert len(third.deleted) == 2 and third.version == "DRAFT"
    deletes = [method for method, path in server.log if path.startswith("/api/files/")]
    assert deletes[:2] == ["DELETE", "DELETE"]  # the first refused with 400 and sent again once the lock was gone
    names = {f["label"] for f in server.datasets[pid]["versions"][-1]["files"]}
    assert names == {path.name for path in third.files}


def test_a_refusal_without_a_lock_is_not_sent_again(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    server.fail_next("/add", 400, "Failed to add file to dataset.")
    with pytest.raises(PublishError) as refused:
        publish(workdir, server.url, "ilcampaign", TOKEN)
    assert "(400): Failed to add file to dataset." in str(refused.value)
    assert sum(path.endswith("/add") for _, path in server.log) == 1


@pytest.mark.parametrize("part_size", [1 << 20, 32 << 10], ids=["single", "multipart"])
def test_large_files_go_by_direct_upload_where_the_store_offers_it(tmp_path, server, monkeypatch, part_size):
    monkeypatch.setattr(Client, "direct_from", 40_000)  # the trajectories (60 kB), not tiny.h5 (34 kB)
    server.direct_part_size = part_size
    workdir = campaign(tmp_path / "work")
    deposit = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert deposit.released and sorted(deposit.uploaded) == sorted(path.name for path in deposit.files)
    calls = [path.rsplit("/", 1)[1] for method, path in server.log if method != "GET" or "uploadurls" in path]
    assert calls.count("add") == 1 and calls.count("uploadurls") == 2 and calls.count("addFiles") == 1
    assert calls.count("mpupload") == (0 if part_size > 60_000 else 2)  # completed, one per trajectory
    puts = [(path, headers) for method, path, headers in server.store_log if method == "PUT"]
    assert len(puts) == (2 if part_size > 60_000 else 4)
    assert not any("X-Dataverse-key" in headers or TOKEN in json.dumps(headers) for _, headers in puts)
    if part_size > 60_000:
        assert all(headers["x-amz-tagging"] == "dv-state=temp" for _, headers in puts)
    files = server.datasets[deposit.persistent_id]["versions"][-1]["files"]
    for path in deposit.files:
        (stored,) = [f for f in files if f["label"] == path.name]
        assert stored["content"] == path.read_bytes() and stored["directoryLabel"] == "tiny"
        assert stored["jsonData"]["tabIngest"] is False
    direct = [f for f in files if "storageIdentifier" in f["jsonData"]]
    assert sorted(f["label"] for f in direct) == sorted(p.name for p in deposit.files if p.stat().st_size >= 40_000)
    assert all(f["jsonData"]["mimeType"] == "application/x-h5" for f in direct)

    step(Archive(workdir / "archive"), "production.nvt.400K", "production", {"sampler": sampler("nvt", 400.0)},
         trajectory=True, finished="2026-01-02T00:00:00+00:00")
    monkeypatch.setattr(Client, "direct_from", 30_000)  # now tiny.h5 too: a released file replaced directly
    server.log.clear()
    second = publish(workdir, server.url, "ilcampaign", TOKEN, release=True)
    assert second.replaced == ["tiny.h5"] and len(second.uploaded) == 1 and second.version == "2.0"
    assert [path for method, path in server.log if path.endswith("/replace")] and "add" not in [
        path.rsplit("/", 1)[1] for _, path in server.log]
    files = server.datasets[deposit.persistent_id]["versions"][-1]["files"]
    assert all(f["content"] == (workdir / "publish" / f["label"]).read_bytes() for f in files) and len(files) == 4


def test_without_direct_upload_every_file_goes_through_the_native_api(tmp_path, server, monkeypatch):
    monkeypatch.setattr(Client, "direct_from", 1)
    deposit = publish(campaign(tmp_path / "work"), server.url, "ilcampaign", TOKEN)
    calls = [path.rsplit("/", 1)[1] for _, path in server.log]
    assert calls.count("uploadurls") == 1 and calls.count("add") == 3 and "addFiles" not in calls  # asked once
    assert server.store_log == [] and len(deposit.uploaded) == 3


def test_a_failed_part_aborts_the_multipart_upload(tmp_path, server, monkeypatch):
    monkeypatch.setattr(Client, "direct_from", 40_000)
    server.direct_part_size = 32 << 10
    original = server._storage

    def refuse_second_part(handler, path, query, body):
        if query.get("partNumber") == "2":
            query.pop("X-Amz-Signature")  # the storage refuses it (403)
        original(handler, path, query, body)

    monkeypatch.setattr(server, "_storage", refuse_second_part)
    with pytest.raises(PublishError) as failed:
        publish(campaign(tmp_path / "work"), server.url, "ilcampaign", TOKEN)
    assert "the storage at 127.0.0.1 refused" in str(failed.value) and "X-Amz-Signature" not in str(failed.value)
    assert [method for method, path in server.log if path.endswith("mpupload")] == ["DELETE"] and not server.multipart


def test_the_answer_to_an_upload_may_take_longer_for_a_larger_file(tmp_path, server, monkeypatch):
    """The wait for an upload's answer grows with the file: a server that answers an upload only after
    1 s is waited for by a client whose socket timeout is 0.3 s when the file's size buys the time."""
    workdir = campaign(tmp_path / "work")
    answer = server._answer

    def slowly(handler, status, payload):
        if handler.path.split("?")[0].endswith("/add"):
            time.sleep(1.0)
        answer(handler, status, payload)

    monkeypatch.setattr(server, "_answer", slowly)
    monkeypatch.setattr(dataverse, "ANSWER_RATE", 1e12)  # no time for the size
    with pytest.raises(PublishError, match="POST /api/datasets/:persistentId/add: the connection to 127.0.0.1 was lost"):
        publish(workdir, server.url, "ilcampaign", TOKEN, timeout=0.3)
    monkeypatch.setattr(dataverse, "ANSWER_RATE", 20_000)  # 1.7 s and more for 34 kB
    assert len(publish(workdir, server.url, "ilcampaign", TOKEN, timeout=0.3).files) == 3


def test_a_folder_name_is_compared_as_dataverse_stores_it(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    manifest = Archive(workdir / "archive").manifest()
    Archive(workdir / "archive").write_manifest({**manifest, "name": "tiny."})  # allowed by the spec's pattern
    first = publish(workdir, server.url, "ilcampaign", TOKEN)
    files = server.datasets[first.persistent_id]["versions"][-1]["files"]
    assert {f["directoryLabel"] for f in files} == {"tiny"} and len(files) == 3
    server.log.clear()
    again = publish(workdir, server.url, "ilcampaign", TOKEN)
    assert again.uploaded == [] and len(again.unchanged) == 3 and again.deleted == []


def test_a_dataset_whose_versions_the_token_cannot_see_is_passed_over(tmp_path, server):
    other = publish(campaign(tmp_path / "other", key="1" * 64), server.url, "ilcampaign", TOKEN)
    server.hide_versions(other.persistent_id)  # e.g. another user's draft: latestVersion null
    assert Client(server.url, TOKEN).find_dataset("ilcampaign", "ilcampaign", "1" * 64) is None
    workdir = campaign(tmp_path / "work")
    server.drop_answer("ilcampaign/datasets")
    with pytest.raises(PublishError):
        publish(workdir, server.url, "ilcampaign", TOKEN)
    deposit = publish(workdir, server.url, "ilcampaign", TOKEN)  # finds its own among them
    assert not deposit.created and len(server.datasets) == 2


def test_token_files_others_can_read_and_non_ascii_tokens_are_refused(tmp_path, server):
    workdir = campaign(tmp_path / "work")
    token_file = tmp_path / "token file"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    shared = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign", "--token-file", token_file],
                  {})
    assert shared.returncode == 2 and server.log == []
    assert f"is readable by others (mode 0644); run: chmod 600 '{token_file}'" in shared.stderr
    token_file.chmod(0o640)
    assert "mode 0640" in _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign",
                                "--token-file", token_file], {}).stderr
    token_file.write_text("d3adb33f-ü\n")
    token_file.chmod(0o600)
    accented = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign", "--token-file",
                     token_file], {})
    assert accented.returncode == 2 and "holds characters other than ASCII" in accented.stderr
    env = _cli(["publish", workdir, "--url", server.url, "--collection", "ilcampaign"],
               {"DATAVERSE_API_TOKEN": "d3adb33f-\u2014"})
    assert env.returncode == 2 and "DATAVERSE_API_TOKEN holds characters other than ASCII" in env.stderr
    assert server.log == [] and "Traceback" not in shared.stderr + accented.stderr + env.stderr
