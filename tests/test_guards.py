"""The sanity guards: contacts (bonded, broken, non-bonded), the packed box, the temperature of MD
runs and the force bound on labels, each firing on a constructed bad case with its message and
staying silent on healthy structures."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from ilcampaign.campaign.spec import Contacts, InitialFile, MDSettings, TemperatureGuard
from ilcampaign.engine.md.ase import run_md_chunk
from ilcampaign.engine.structures.guards import ContactCheck, FrameCheck, bonds_of, template, worst_contact
from ilcampaign.engine.structures.ions import conformer
from ilcampaign.engine.structures.packing import pack_box

BMIM, BF4 = "CCCCn1cc[n+](C)c1", "F[B-](F)(F)F"


@pytest.fixture(scope="module")
def box() -> Atoms:
    """Two BMIM BF4 pairs packed by PACKMOL from force-field ions."""
    return pack_box([(conformer(BMIM, 0), 2), (conformer(BF4, 1), 2)], 0.6, seed=3, tolerance=2.0)


def test_a_healthy_box_passes(box):
    assert ContactCheck(Contacts(), [BMIM, BF4])(box) is None


def test_topology_comes_from_the_smiles_in_box_order(box):
    bonds = bonds_of(box, [template(BMIM), template(BF4)])
    assert len(bonds) == 2 * len(template(BMIM).bonds) + 2 * len(template(BF4).bonds)
    without_ids = box.copy()
    del without_ids.arrays["mol_id"]
    assert np.array_equal(bonds_of(without_ids, [template(BMIM), template(BF4)]), bonds)
    assert bonds_of(box[::-1], [template(BMIM), template(BF4)]) is None  # another order: no topology


def test_atoms_on_top_of_each_other_are_named(box):
    bad = box.copy()
    anion_f = next(i for i, s in enumerate(bad.get_chemical_symbols()) if s == "F")
    cation_h = next(i for i, s in enumerate(bad.get_chemical_symbols()) if s == "H")
    bad.positions[anion_f] = bad.positions[cation_h] + [0.3, 0, 0]
    violation = ContactCheck(Contacts(), [BMIM, BF4])(bad)
    assert violation.kind == "non-bonded" and {violation.i, violation.j} == {anion_f, cation_h}
    assert str(violation).startswith(f"H{cation_h}-F{anion_f} (non-bonded) 0.30 A apart, below 0.9 x")


def test_a_collapsed_and_a_broken_bond(box):
    bonds = bonds_of(box, [template(BMIM), template(BF4)])
    i, j = next((i, j) for i, j in bonds if box.symbols[j] == "H" and box.symbols[i] == "C")
    collapsed = box.copy()
    collapsed.positions[j] = collapsed.positions[i] + 0.45 * (box.positions[j] - box.positions[i]) / box.get_distance(i, j)
    violation = worst_contact(collapsed, bonds, Contacts())
    assert (violation.kind, violation.i, violation.j) == ("bonded", i, j)
    assert "0.45 A apart, below 0.6 x their covalent radii = 0.64 A" in str(violation)
    broken = box.copy()
    broken.positions[j] = broken.positions[i] + 2.0 * (box.positions[j] - box.positions[i]) / box.get_distance(i, j)
    violation = worst_contact(broken, bonds, Contacts())
    assert violation.kind == "broken bond" and "2.00 A apart, above 1.6 x" in str(violation)
    assert worst_contact(broken, bonds, Contacts(bonded_max=None)) is None  # proton-transfer liquids switch it off


def test_without_topology_every_pair_is_held_to_the_bonded_bound(box):
    squeezed = box.copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.5, 0, 0]
    violation = worst_contact(squeezed, None, Contacts())
    assert violation.kind == "contact" and {violation.i, violation.j} == {0, 1}


def test_the_pack_step_refuses_overlapping_molecules(box):
    from ilcampaign.engine.step import StepFailed
    from ilcampaign.engine.steps.pack import PackStep

    pack = PackStep(ions=[{"name": "BMIM", "smiles": BMIM, "count": 2}, {"name": "BF4", "smiles": BF4, "count": 2}],
                density=0.6, packing_density=0.6, tolerance=2.0, seed=3, contacts=Contacts())
    molecules = [conformer(BMIM, 0), conformer(BF4, 1)]
    assert pack._check(box, molecules)["max_bond_change_A"] < 1e-6
    overlapping = box.copy()
    anion = np.flatnonzero(overlapping.arrays["mol_id"] == overlapping.arrays["mol_id"].max())
    overlapping.positions[anion] += overlapping.positions[0] - overlapping.positions[anion[0]] + [0.2, 0, 0]
    with pytest.raises(StepFailed, match=r"the packed box is not sane: .*non-bonded"):
        pack._check(overlapping, molecules)


# --------------------------------------------------------------------------- temperature guard


class PumpingEMT(EMT):
    """EMT plus a non-conservative push along each atom's velocity: the run heats without bound."""

    def calculate(self, atoms=None, *args, **kwargs):
        super().calculate(atoms, *args, **kwargs)
        velocities = atoms.get_velocities()
        self.results["forces"] = self.results["forces"] + 0.5 * velocities / (np.abs(velocities).max() + 1e-12)


def copper() -> Atoms:
    from ase.build import bulk

    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)


def test_a_run_heating_out_of_control_is_stopped_on_its_sustained_temperature():
    sampler = MDSettings(temperature=300.0, timestep=2.0, n_steps=400, interval=10, friction=1e-4)
    guard = TemperatureGuard(blow_up_ratio=1000.0, ratio=2.0, steps=20)
    chunk = run_md_chunk(copper(), PumpingEMT(), sampler, seed=0, first=0, last=400, state=None, uncertainty=None,
                         guard=guard)
    assert chunk.stop_reason.startswith(f"exploded at step {chunk.stopped_at}: temperature above 2 x target for "
                                        "20 steps")
    assert all(f.info["step"] < chunk.stopped_at for f in chunk.frames)
    hot = [row for row in chunk.rows if row[2] > 600]
    assert hot and chunk.state is None


def test_the_temperature_guard_is_silent_on_a_healthy_run():
    sampler = MDSettings(temperature=300.0, timestep=2.0, n_steps=200, interval=10)
    chunk = run_md_chunk(copper(), EMT(), sampler, seed=0, first=0, last=200, state=None, uncertainty=None,
                         guard=TemperatureGuard())
    assert chunk.stop_reason is None and len(chunk.frames) == 20


def test_the_hot_count_survives_a_chunk_boundary():
    """20 hot steps in a row over two chunks fire just as in one run."""
    sampler = MDSettings(temperature=300.0, timestep=2.0, n_steps=400, interval=10, friction=1e-4)
    guard = TemperatureGuard(blow_up_ratio=1000.0, ratio=2.0, steps=20)
    whole = run_md_chunk(copper(), PumpingEMT(), sampler, seed=0, first=0, last=400, state=None, uncertainty=None,
                         guard=guard)
    first_hot = next(int(row[0]) for row in whole.rows if row[2] > 2 * 300)
    split = first_hot + 5 if (first_hot + 5) % 10 else first_hot + 6
    part = run_md_chunk(copper(), PumpingEMT(), sampler, seed=0, first=0, last=split, state=None, uncertainty=None,
                        guard=guard)
    rest = run_md_chunk(copper(), PumpingEMT(), sampler, seed=0, first=split, last=400, state=part.state,
                        uncertainty=None, guard=guard)
    assert part.stop_reason is None and rest.stopped_at == whole.stopped_at


# --------------------------------------------------------------------------- labels beyond the force bound


def test_a_label_with_100_eV_per_A_is_refused_and_recorded(tmp_path):
    """A label step whose reference gives 100 eV/A (served from the calculation cache, as initial MD
    labels are) refuses that frame: recorded with its force, not passed on."""
    from ase.io import read, write

    from ilcampaign.archive.atomic import sha256_file
    from ilcampaign.archive.frames import read_frames, write_frames
    from ilcampaign.archive.store import Archive
    from ilcampaign.campaign.spec import XTB, Failures
    from ilcampaign.engine.graph import Node, resolve_keys
    from ilcampaign.engine.labels.cache import configuration_digest
    from ilcampaign.engine.run.runner import run_graph
    from ilcampaign.engine.steps.initial_file import InitialFileStep
    from ilcampaign.engine.steps.label import LabelStep

    trajectory = tmp_path / "frames.extxyz"
    write(trajectory, [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74 + 0.01 * k]], cell=[6] * 3, pbc=True)
                       for k in range(3)])
    reference = XTB()
    archive = Archive(tmp_path / "wd" / "archive")
    for k, frame in enumerate(read(trajectory, ":")):  # the configurations the label step will see
        forces = np.zeros((2, 3))
        forces[0, 2] = 100.0 if k == 1 else 1.0
        frame.calc = SinglePointCalculator(frame, energy=-1.0, forces=forces, stress=np.zeros(6))
        cached = archive.cache_file(configuration_digest(reference, frame))
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_frames(cached, [frame])
    frames = InitialFileStep(settings=InitialFile(path=str(trajectory)), path=str(trajectory),
                             sha256=sha256_file(trajectory))
    label = LabelStep.from_spec(reference, [], Failures(on_failure="skip"), max_force=50.0)
    nodes = resolve_keys([Node("initial_data", frames), Node("label", label, inputs={"frames": "initial_data"})])
    run_graph(nodes, tmp_path / "wd", workers=1, progress=lambda *a: None)
    summary = archive.record(nodes[1].key)["summary"]
    assert (summary["n_labelled"], summary["n_refused"], summary["n_computed"]) == (2, 1, 0)
    assert summary["refused"] == {"1": "frame 1: a force component of 100.0 eV/A > guards.max_force 50 eV/A"}
    kept = read_frames(archive.output(nodes[1].key, "frames.h5"))
    assert [f.info["source_index"] for f in kept] == [0, 2]


def test_select_drops_candidates_beyond_the_contact_guard(box):
    """Whatever a sampler hands over (volume scans, conformer boxes, a pool), select never offers a
    candidate that breaks the guard, and records it with the worst contact."""
    from ilcampaign.engine.steps.select import SelectStep

    bad = box.copy()
    bad.positions[1] = bad.positions[0] + [0.3, 0, 0]
    removed, worst = SelectStep._guard(FrameCheck(Contacts(), None, [BMIM, BF4]), [box, bad, box])
    assert removed == [1] and worst.startswith("C0-C1 (bonded) 0.30 A apart")
    assert SelectStep._guard(FrameCheck(None, None, [BMIM, BF4]), [bad]) == ([], None)  # contacts: null


def test_the_bond_guard_holds_each_bond_to_its_relaxed_length(box):
    """A C-H bond at 0.75 of its relaxed length passes the contact guard (0.6 x the covalent radii)
    but not the bond guard; one at 1.55 of it is stretched; both are named with their bound."""
    from ilcampaign.campaign.spec import BondGuard
    from ilcampaign.engine.structures.guards import BondCheck

    check = BondCheck(BondGuard(), [BMIM, BF4], [conformer(BMIM, 0), conformer(BF4, 1)])  # the box's ions
    assert check(box) is None
    i, j = next((i, j) for i, j in bonds_of(box, [template(BMIM), template(BF4)]) if box.symbols[j] == "H")
    relaxed, direction = box.get_distance(i, j), (box.positions[j] - box.positions[i]) / box.get_distance(i, j)
    squeezed = box.copy()
    squeezed.positions[j] = box.positions[i] + 0.75 * relaxed * direction
    assert ContactCheck(Contacts(), [BMIM, BF4])(squeezed) is None
    violation = check(squeezed)
    assert (violation.kind, violation.i, violation.j, violation.guard) == ("compressed bond", i, j, "bond guard")
    assert str(violation) == (f"C{i}-H{j} (compressed bond) {0.75 * relaxed:.2f} A apart, below 0.8 x its relaxed "
                              f"length {relaxed:.2f} A = {0.8 * relaxed:.2f} A")
    assert FrameCheck(Contacts(), BondGuard(), [BMIM, BF4], [conformer(BMIM, 0), conformer(BF4, 1)])(squeezed) == violation
    stretched = box.copy()
    stretched.positions[j] = box.positions[i] + 1.55 * relaxed * direction
    assert check(stretched).kind == "stretched bond" and "above 1.5 x its relaxed length" in str(check(stretched))
    assert BondCheck(BondGuard(max=None), [BMIM, BF4], [conformer(BMIM, 0), conformer(BF4, 1)])(stretched) is None


@pytest.mark.slow
def test_rattled_frames_are_redrawn_until_their_bonds_pass(tmp_path):
    """0.08 A rattles (the demo's before it had a driver) put some bond outside 0.8-1.5 x its relaxed
    length in most draws of a box; every frame kept is within, and the dataset check finds none
    outside in the labels and reports their largest force."""
    import subprocess
    import sys

    from conftest import ROOT, nodes_until, tiny_spec
    from ilcampaign.archive.store import Archive
    from ilcampaign.engine.run.runner import run_graph

    spec = tiny_spec(tmp_path / "spec.yaml", initial_data="  kind: rattle\n  n_frames: 4\n  stdev: 0.08 A\n")
    nodes = nodes_until(spec, "label.initial_data")
    run_graph(nodes, tmp_path / "wd", workers=1, progress=lambda *a: None)
    summary = Archive(tmp_path / "wd" / "archive").record(nodes[2].key)["summary"]
    assert summary["n_frames"] == 4 and summary["n_redrawn"] > 0
    result = subprocess.run([sys.executable, ROOT / "benchmarks" / "dataset_bonds.py", tmp_path / "wd"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| label.initial_data"))
    assert row.split("|")[3:5] == [" 4 ", " 0 "]
