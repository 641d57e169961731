"""CP2K through the engine: a BF4- single point read from a file and labelled by the ``label`` step, and
the CP2K version that goes into the records of steps running it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import units
from ase.io import write

from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.spec import XTB, Failures, InitialFile
from ilcampaign.engine.graph import Node, resolve_keys
from ilcampaign.archive.atomic import sha256_file
from ilcampaign.engine.labels.cp2k import cp2k_version, parse_cp2k_version
from ilcampaign.engine.labels.method import reference_programs
from ilcampaign.engine.run.runner import run_graph
from ilcampaign.engine.steps.initial_file import InitialFileStep
from ilcampaign.engine.steps.label import LabelStep
from tests.test_reference import PBE, bf4_anion

pytestmark = pytest.mark.slow

#: the first lines of ``cp2k --version`` from Debian's cp2k 2023.1-2 (``cp2k_shell --version`` prints the
#: same, then waits for input)
BANNER = """\
 CP2K version 2023.1
 Source code revision git:b888bd8
 cp2kflags: omp libint fftw3 libxc elpa parallel scalapack spglib
 compiler: GCC version 12.2.0
"""


def test_cp2k_version_from_its_banner():
    assert parse_cp2k_version(BANNER) == "2023.1"
    assert parse_cp2k_version("sh: 1: cp2k_shell: not found\n") is None
    installed = cp2k_version("cp2k_shell")  # the installed CP2K, run the way a reference's command runs it
    assert re.fullmatch(r"\d{4}\.\d+", installed) and cp2k_version("cp2k.psmp") == installed
    assert cp2k_version("no-such-cp2k") is None
    programs = reference_programs([PBE, PBE.model_copy(update={"command": "no-such-cp2k"})])
    assert [(p["program"], p["version"], p["level"]) for p in programs] == [("CP2K", installed, "PBE"),
                                                                            ("CP2K", None, "PBE")]
    assert [(p["program"], p["level"]) for p in reference_programs([XTB()])] == [("tblite", "GFN2-xTB")]


def test_bf4_single_point_through_label_step(tmp_path):
    anion = bf4_anion(8.0)
    anion.info["charge"] = -1
    write(tmp_path / "bf4.extxyz", anion)
    nodes = resolve_keys([
        Node("initial_data", InitialFileStep(settings=InitialFile(path="bf4.extxyz"), path=str(tmp_path / "bf4.extxyz"),
                                             sha256=sha256_file(tmp_path / "bf4.extxyz"))),
        Node("label.initial_data", LabelStep.from_spec(PBE, [], Failures(on_failure="stop")), inputs={"frames": "initial_data"}),
    ])
    assert run_graph(nodes, tmp_path / "wd", workers=1, progress=lambda *a: None) == ["initial_data", "label.initial_data"]
    archive = Archive(tmp_path / "wd" / "archive")
    (frame,) = read_frames(archive.output(nodes[1].key, "frames.h5"))
    energy, forces = frame.get_potential_energy(), frame.get_forces()
    # a five-atom anion: total energy of B (3 e) + 4 F (7 e each) valence electrons, about -100 Ha
    assert -110 * units.Hartree < energy < -90 * units.Hartree
    assert forces.shape == (5, 3) and np.all(np.isfinite(forces))
    assert np.abs(forces.sum(axis=0)).max() < 0.05  # momentum conservation up to the grid
    assert frame.get_stress().shape == (6,)
    assert frame.info["reference_level"] == 0
    record = archive.record(nodes[1].key)
    assert record["software"]["cp2k"] == cp2k_version(PBE.command) and "software" not in record["summary"]
    assert "cp2k" not in archive.record(nodes[0].key)["software"]  # read from a file: no CP2K ran
    assert record["summary"]["n_labelled"] == 1
    assert record["summary"]["settings"][0]["functional"] == "PBE"
    assert archive.verify() == []
