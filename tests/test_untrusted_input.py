"""What a downloaded archive, work directory, export or spec can make ``campaign`` do: nothing but
read data. A planted chunk state is refused (no pickle is ever loaded), digests and file names from
an export or archive become paths only once checked, a damaged model blob is not unpacked, an alias
bomb is refused at once, step names never drive the terminal, token files others can read are
refused (tests/test_publish.py), and writers never share a temporary file."""

from __future__ import annotations

import json
import os
import pickle
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.optimize import BFGS

from ilcampaign.archive import open as open_campaign
from ilcampaign.archive.atomic import atomic_path
from ilcampaign.archive.export import export
from ilcampaign.archive.store import Archive, ArchiveError
from ilcampaign.campaign.loader import SpecError, load_spec
from ilcampaign.campaign.terminal import progress_display
from ilcampaign.engine.md.ase import restore_state, state_of
from ilcampaign.engine.run.chunks import decode_state, encode_state
from ilcampaign.engine.step import StepContext, StepFailed
from tests.conftest import MD, nodes_until, run_cli, tiny_spec
from tests.test_export import key
from tests.test_publish import campaign

MARKER = "ran-the-payload"


class Payload:
    """Unpickling this writes a file (where the test can see it) and returns None."""

    def __init__(self, where: Path):
        self.where = str(where)

    def __reduce__(self):
        return (exec, (f"open({self.where!r}, 'w').write('pwned')",))


def test_a_planted_chunk_state_is_refused_and_never_run(tmp_path):
    """The initial-data MD's key follows from the spec: a pickle planted as the state of its first
    chunk (a payload that would write beside the work directory) stops the run with a clear error."""
    spec = tiny_spec(tmp_path / "spec.yaml", initial_data=MD.format(n_steps=4, interval=2, chunk=2))
    workdir = tmp_path / "work"
    step = nodes_until(spec, "initial_data")[-1]
    tasks = Archive(workdir / "archive").task_dir(step.key)
    tasks.mkdir(parents=True)
    (tasks / "steps000000000-000000002.json").write_text(json.dumps({"rows": []}))  # chunk 1 "done"
    (tasks / "steps000000000-000000002.state").write_bytes(pickle.dumps(Payload(tmp_path / MARKER)))
    before = {path for path in tmp_path.iterdir() if path != workdir}
    result = run_cli("run", spec, "--workdir", workdir)
    assert result.returncode == 1
    assert "steps000000000-000000002.state is refused: not a plain-data state" in result.stderr
    assert "nothing in it was run. Delete it and steps000000000-000000002.json beside it" in result.stderr
    assert not (tmp_path / MARKER).exists()
    assert {path for path in tmp_path.iterdir() if path != workdir} == before  # nothing written outside


def test_states_are_plain_data_and_a_state_sets_variables_only():
    with pytest.raises(ValueError, match="not a plain-data state"):
        decode_state(pickle.dumps(Payload(Path("/nonexistent") / MARKER)))
    buffer = __import__("io").BytesIO()
    np.savez(buffer, x=np.array([Payload(Path("/nonexistent") / MARKER)], dtype=object))  # pickled inside the npz
    with pytest.raises(ValueError, match="Object arrays cannot be loaded"):
        decode_state(buffer.getvalue())
    with pytest.raises(TypeError):
        encode_state({"x": np.array([object()], dtype=object)})

    atoms = bulk("Cu", cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    langevin = Langevin(atoms, 1.0, temperature_K=300, friction=0.01, fixcm=False, rng=np.random.default_rng(0))
    langevin.run(2)
    saved = decode_state(encode_state(state_of(langevin, "dynamics/")))
    assert saved["dynamics/rng"]["bit_generator"] == "PCG64" and saved["dynamics/v"].shape == (32, 3)
    for entry in ({"dynamics/run": 1}, {"dynamics/atoms/calc": None}, {"dynamics/__dict__": {}},
                  {"dynamics/observers": []}, {"dynamics/rng/state": 1}):
        with pytest.raises(ValueError, match="chunk state entry"):
            restore_state(langevin, entry, "dynamics/")
    optimiser = BFGS(atoms, logfile=None)
    for entry in ({"dynamics/state/__class__": "subprocess.Popen", "dynamics/state/args": "touch x"},
                  {"dynamics/state/hessian": np.eye(3)}):  # a held object of a class not listed, or unnamed
        with pytest.raises(ValueError, match="names no object"):
            restore_state(optimiser, entry, "dynamics/")
    assert optimiser.state is None


def _export_with_record(tmp_path: Path, change) -> tuple[Path, str]:
    """An export of a small campaign whose first production step's record.json is changed by
    ``change(record)`` (its checksums recomputed, as an attacker would); (export, step name)."""
    workdir = campaign(tmp_path / "work")
    path = export(workdir / "archive", tmp_path / "export.h5")
    name = "production.npt.300K"
    with h5py.File(path, "r+") as f:
        step = next(group for group in f["steps"].values() if group.attrs["name"] == name)
        record = json.loads(step["record.json"][()])
        change(record)
        text = json.dumps(record).encode()
        del step["record.json"]
        step.create_dataset("record.json", data=np.bytes_(text), dtype=h5py.string_dtype("utf-8", len(text)))
    return path, name


@pytest.mark.parametrize("digest", ["../../../../outside", "/tmp/absolute", "0" * 63 + "/", "A" * 64])
def test_an_export_whose_record_turns_a_digest_into_a_path_is_refused(tmp_path, digest):
    path, name = _export_with_record(tmp_path, lambda record: record["outputs"].update({"trajectory.h5": digest}))
    cache = tmp_path / "deep" / "cache"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(ArchiveError, match="is no SHA-256 digest"):
        open_campaign(path, cache_dir=cache).step(name).trajectory_path()
    assert set(tmp_path.rglob("*")) == before  # nothing extracted anywhere


def test_names_and_blobs_from_an_export_are_checked(tmp_path):
    path, name = _export_with_record(tmp_path, lambda record: record.update(blobs={"model": "0" * 64}))
    opened = open_campaign(path, cache_dir=tmp_path / "cache")
    with pytest.raises(ArchiveError, match="no plain file name"):
        opened.step(name).trajectory_path("../../trajectory.h5")
    with pytest.raises(ArchiveError, match="is no SHA-256 digest"):
        opened.blob("../../" + "0" * 58)
    with h5py.File(path, "r+") as f:  # a blob whose bytes are not those its name says
        f.create_dataset(f"blobs/{'0' * 64}", data=np.frombuffer(b"not the model", dtype=np.uint8))
    with pytest.raises(ArchiveError, match="damaged"):
        open_campaign(path).blob("0" * 64)
    assert opened.step(name).trajectory_path().is_file()  # the real one still reads
    with h5py.File(path, "r+") as f:  # a link to a file elsewhere on the reader's machine
        group = next(group for group in f["steps"].values() if group.attrs["name"] == name)
        del group["trajectory.h5"]
        group["trajectory.h5"] = h5py.ExternalLink(str(tmp_path / "elsewhere" / "private.h5"), "/")
    for read in (lambda step: step.frames("trajectory.h5"), lambda step: step.trajectory_path()):
        with pytest.raises(ArchiveError, match="split file name .* is no plain file name"):
            read(open_campaign(path, cache_dir=tmp_path / "cache").step(name))


def test_an_archive_folder_with_crafted_names_is_refused_not_followed(tmp_path):
    workdir = campaign(tmp_path / "work")
    archive = Archive(workdir / "archive")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    step = archive.index()["names"]["production.npt.300K"]
    record_path = archive.step_dir(step) / "record.json"
    record = json.loads(record_path.read_text())
    record["outputs"]["../../../../secret.txt"] = record["outputs"].pop("trajectory.h5")
    record_path.write_text(json.dumps(record))
    index = archive.index()
    index["steps"][step]["record_sha256"] = __import__("hashlib").sha256(record_path.read_bytes()).hexdigest()
    index["steps"]["../../x"] = dict(index["steps"][step])
    archive.index_path.write_text(json.dumps(index))
    problems = archive.verify()
    assert any("'../../../../secret.txt' is no plain file name" in problem for problem in problems)
    assert any("'../../x' is no SHA-256 digest" in problem for problem in problems)
    with pytest.raises(ArchiveError):  # so an export (and a publication) never picks up the file beside it
        export(archive.root, tmp_path / "out.h5")
    status = run_cli("status", workdir)
    assert status.returncode == 1 and "error: refused: the step key '../../x' is no SHA-256 digest" in status.stderr
    assert "Traceback" not in status.stderr
    for bad in ("../x", "/etc", "0" * 64 + "/.."):
        with pytest.raises(ArchiveError):
            archive.step_dir(bad)
        with pytest.raises(ArchiveError):
            archive.blob_path(bad)
        with pytest.raises(ArchiveError):
            archive.cache_file(bad)


def test_a_model_blob_is_checked_before_it_is_unpacked(tmp_path):
    archive = Archive(tmp_path / "work" / "archive")
    tar = tmp_path / "model.tar"
    tar.write_bytes(b"a model")
    digest = archive.put_blob(tar)
    trained = key("train")
    archive.commit(trained, "train", {"kind": "train", "finished": "1", "blobs": {"model": digest}}, [])
    archive.blob_path(digest).chmod(0o644)
    archive.blob_path(digest).write_bytes(b"another model")  # damaged, or swapped by whoever sent the folder
    ctx = StepContext(archive, key("md"), {"model": trained}, tmp_path / "work" / "scratch")
    with pytest.raises(StepFailed, match="the blob .* is damaged"):
        ctx.model_dir()
    record = archive.record(trained)
    record["blobs"]["model"] = "../../../outside"
    (archive.step_dir(trained) / "record.json").write_text(json.dumps(record))
    with pytest.raises(StepFailed, match="is no SHA-256 digest"):
        ctx.model_dir()
    assert not (tmp_path / "work" / "models").exists() or not any((tmp_path / "work" / "models").iterdir())


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["campaign: {name: bomb}", "a0: &a0 [x, x]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 31)]
    spec = tmp_path / "bomb.yaml"
    spec.write_text("\n".join(lines) + "\n")  # 2^30 values once expanded
    start = time.perf_counter()
    with pytest.raises(SpecError) as refused:
        load_spec(spec)
    assert time.perf_counter() - start < 1.0
    (problem,) = refused.value.problems
    assert (problem.line, problem.column) == (16, 18)  # at a14 the values so far pass 100,000
    assert "the aliases expand the spec to more than 100,000 values" in problem.message
    result = run_cli("validate", spec)
    assert result.returncode == 2 and "bomb.yaml:16:18:" in result.stderr and "Traceback" not in result.stderr
    small = tmp_path / "aliases.yaml"  # aliases as specs use them are fine
    small.write_text("x: &t 300 K\ny: [*t, *t]\n")
    with pytest.raises(SpecError) as other:
        load_spec(small)
    assert "aliases expand" not in str(other.value)


NAME = "[/bold]evil[red]\x1b[2J\x1b]0;title\x07\x9b31m"


def test_step_names_are_printed_as_text_without_escape_sequences(tmp_path):
    workdir = campaign(tmp_path / "work")
    archive = Archive(workdir / "archive")
    step = archive.index()["names"]["production.npt.300K"]
    record_path = archive.step_dir(step) / "record.json"
    record = json.loads(record_path.read_text())
    record.update(name=NAME, kind=NAME, wall_s=1.0)
    record_path.write_text(json.dumps(record))
    index = archive.index()
    index["steps"][step].update(name=NAME, record_sha256=__import__("hashlib").sha256(
        record_path.read_bytes()).hexdigest())
    archive.index_path.write_text(json.dumps(index))
    for entry in archive.index()["steps"]:  # status needs every record's wall time
        path = archive.step_dir(entry) / "record.json"
        path.write_text(json.dumps({"wall_s": 0.0, **json.loads(path.read_text())}))
    status = run_cli("status", workdir)
    assert status.returncode == 0, status.stderr
    assert "[/bold]evil[red][2J]0;title31m" in status.stdout  # the text, less its control characters
    (archive.step_dir(step) / "trajectory.h5").write_bytes(b"damaged")
    verify = run_cli("verify", workdir)
    assert verify.returncode == 1 and "[/bold]evil[red][2J]0;title31m" in verify.stderr
    for output in (status.stdout + status.stderr, verify.stdout + verify.stderr):
        assert not any(c in output for c in "\x1b\x07\x9b") and "Traceback" not in output

    from io import StringIO

    from rich.console import Console

    for terminal in (True, False):  # progress bars and plain progress lines
        console = Console(file=StringIO(), force_terminal=terminal)
        with progress_display(console) as update:
            update(NAME, 0, 2)
            update(NAME, 2, 2)
        text = console.file.getvalue()
        assert "[/bold]evil" in text and "\x07" not in text and "\x1b]0" not in text and "\x1b[2J" not in text


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "cache" / "shared.h5"
    with atomic_path(target) as first, atomic_path(target) as second:  # two writers of one process
        assert first != second and first.exists() and second.exists()
        first.write_bytes(b"one")
        second.write_bytes(b"two")
    assert target.read_bytes() == b"one" and not list(target.parent.glob("*.tmp"))  # the last to finish wins
    umask = os.umask(0o022)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o666 & ~umask  # the umask's permissions, not mkstemp's 0600

    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                with atomic_path(target) as tmp:
                    tmp.write_bytes(str(i).encode() * 1000)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(target.read_bytes())) == 1 and not list(target.parent.glob("*.tmp"))


def test_concurrent_reports_draw_into_folders_of_their_own(tmp_path):
    from ilcampaign.reports.render import figure_pdfs, figures, write_report
    from ilcampaign.reports.view import CampaignView

    archive = Archive(campaign(tmp_path / "work") / "archive")
    view = CampaignView(archive, {**archive.manifest(), "steps": []})  # every figure "not available"
    cache, results, errors = tmp_path / "cache", [], []
    barrier = threading.Barrier(4)

    def report() -> None:
        try:
            barrier.wait()
            results.append([(figure.id, figure.reason) for figure in figures(view, cache)])
        except Exception as exc:  # noqa: BLE001 - any failure of a concurrent report is the finding
            errors.append(exc)

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4 and all(result == results[0] for result in results)
    assert not list(cache.glob("*.partial")) and all((folder / "done.json").exists() for folder in cache.iterdir())

    stale = cache / "0123.abcd.partial" / "learning_curves"  # left by a killed report
    stale.mkdir(parents=True)
    (stale / "figure.pdf").write_bytes(b"%PDF half")
    done = cache / "4567" / "learning_curves"
    done.mkdir(parents=True)
    (done / "figure.pdf").write_bytes(b"%PDF whole")
    assert figure_pdfs(cache) == {"learning_curves": done / "figure.pdf"}
    out = write_report(view, cache, tmp_path / "report.html")
    assert out.read_text().startswith("<!DOCTYPE html>") and not list(tmp_path.glob(".report.html.*"))
