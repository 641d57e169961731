"""ilcampaign.engine.models.apax and ilcampaign.engine.models.training end to end on a tiny real dataset: one BMIM BF4 ion
pair (30 atoms, 7.2 A box) rattled and labelled with GFN2-xTB, and one [16, 16] ensemble trained
for a few epochs that every test shares (training dominates the run time)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from ase import Atoms

from ilcampaign.campaign.spec import ApaxModel
from ilcampaign.campaign.units import to_internal

pytestmark = pytest.mark.slow

R_MAX = 3.0  # a 7.2 A box is then large enough for JAX MD (widths > 2 r_max)
EPOCHS = 5


def tiny_model() -> ApaxModel:
    return ApaxModel(nn=[16, 16], n_basis=4, n_radial=3, r_max=R_MAX, epochs=EPOCHS, batch_size=2, valid_batch_size=4)


def rattled(box: Atoms, stdevs, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for stdev in stdevs:
        frame = box.copy()
        frame.positions += rng.normal(0.0, stdev, frame.positions.shape)
        frames.append(frame)
    return frames


def min_pairwise_distance(features: np.ndarray) -> float:
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
    return float(distances[np.triu_indices(len(features), 1)].min())


@pytest.fixture(scope="module")
def box() -> Atoms:
    from ilcampaign.engine.structures.ions import conformer
    from ilcampaign.engine.structures.packing import pack_box

    ions = [(conformer("CCCCn1cc[n+](C)c1", 1), 1), (conformer("F[B-](F)(F)F", 1), 1)]
    return pack_box(ions, to_internal("1.0 g/cm^3", "density"), seed=1, tolerance=2.0)


@pytest.fixture(scope="module")
def labelled(box) -> list[Atoms]:
    """12 rattled copies (0.02 to 0.13 A) with GFN2-xTB energy, forces and stress."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from tblite.ase import TBLite

    frames = []
    for atoms in rattled(box, 0.02 + 0.01 * np.arange(12), seed=0):
        atoms.calc = TBLite(method="GFN2-xTB", charge=0, verbosity=0)
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, **labels)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def trained(labelled, tmp_path_factory):
    """The shared ensemble, and whether training left the root logger's handlers as they were."""
    from ilcampaign.engine.models.training import train

    before = list(logging.getLogger().handlers)
    result = train(tiny_model(), labelled[:8], labelled[8:], tmp_path_factory.mktemp("train"), checkpoint_every=2)
    return result, logging.getLogger().handlers == before


def test_apax_config_has_the_paper_settings_and_is_validated(tmp_path):
    from ilcampaign.engine.models.training import apax_config

    paths = dict(train_path=tmp_path / "t.extxyz", valid_path=tmp_path / "v.extxyz", directory=tmp_path,
                 n_train=10, n_valid=5)
    config = apax_config(ApaxModel(), **paths)
    model = config["model"]
    assert model["basis"] == {"name": "gaussian", "n_basis": 7, "r_min": 0.7, "r_max": 5.5}
    assert (model["n_radial"], model["nn"]) == (5, [512, 512])
    assert model["ensemble"] == {"kind": "full", "n_members": 2}
    assert model["empirical_corrections"] == [{"name": "zbl"}] and model["calc_stress"]
    assert {model[k] for k in ("descriptor_dtype", "readout_dtype", "scale_shift_dtype")} == {"fp32"}
    weights = [(loss["name"], loss["weight"]) for loss in config["loss"]]
    assert weights == [("energy", 1.0), ("forces", 4.0), ("stress", 0.2)]
    rates = [config["optimizer"][f"{name}_lr"] for name in ("emb", "nn", "scale", "shift")]
    assert rates == [0.01, 0.005, 0.001, 0.05]
    assert config["data"]["shift_options"] == {"energy_regularisation": 1.0}

    overrides = {"model": {"n_contr": 4}, "optimizer": {"zbl_lr": 0.1}}
    extra = apax_config(ApaxModel(zbl=False, apax_extra=overrides), **paths)
    assert extra["model"]["n_contr"] == 4 and extra["model"]["nn"] == [512, 512]
    assert extra["optimizer"]["zbl_lr"] == 0.1 and extra["optimizer"]["nn_lr"] == 0.005
    assert extra["model"]["empirical_corrections"] == []
    with pytest.raises(ValueError, match="n_basis"):
        apax_config(ApaxModel(apax_extra={"model": {"basis": {"n_basis": 0}}}), **paths)


def test_train_gives_finite_metrics_curves_with_units_and_a_lean_model(trained, tmp_path):
    from ilcampaign.archive.arrays import write_dataset

    result, root_logger_kept = trained
    assert root_logger_kept
    assert result.metrics["n_train"] == 8 and result.metrics["n_valid"] == 4
    for name in ("energy", "forces", "stress"):
        for kind in ("mae", "rmse"):
            value = result.metrics[f"{name}_{kind}"]
            assert np.isfinite(value) and value > 0
        assert result.metrics[f"{name}_rmse"] >= result.metrics[f"{name}_mae"]

    curves = result.curves
    assert curves["epoch"].values.tolist() == list(range(EPOCHS))
    assert {"train_loss", "val_loss", "val_forces_mae", "val_energy_mae", "val_stress_mae"} <= set(curves.data_vars)
    assert curves["val_forces_mae"].attrs["units"] == "eV/Angstrom" and curves["val_loss"].attrs["units"] == "1"
    assert all(np.isfinite(curves[name]).all() for name in curves.data_vars)
    write_dataset(tmp_path / "curves.nc", curves)  # refuses variables without units

    model_dir = result.model_dir
    assert (model_dir / "config.yaml").is_file() and not (model_dir / "latest").exists()
    assert len(list((model_dir / "best").iterdir())) == 1


def test_force_uncertainty_is_eqn_8(trained, labelled):
    from ilcampaign.engine.models.apax import force_uncertainty, load_calculator

    atoms = labelled[9].copy()
    atoms.calc = load_calculator(trained[0].model_dir)
    forces = atoms.get_forces()
    results = atoms.calc.results
    members = results["forces_ensemble"]  # (atoms, 3, members)
    assert members.shape == (len(atoms), 3, 2)
    np.testing.assert_allclose(members.mean(axis=-1), forces, atol=1e-6)
    # eqn 8 with two members: sqrt(((F1 - F2) / 2)^2 averaged over 2 members) = |F1 - F2| / 2
    manual = np.max(np.abs(members[..., 0] - members[..., 1])) / 2
    assert force_uncertainty(results) == pytest.approx(manual, rel=1e-12)
    assert np.max(results["forces_uncertainty"]) == pytest.approx(manual, rel=1e-5)  # apax: population std too


def test_jax_md_valid_uses_perpendicular_widths(box):
    from ilcampaign.engine.models.apax import jax_md_valid

    side = box.cell.lengths()[0]  # 7.2 A
    assert jax_md_valid(box, R_MAX)
    assert not jax_md_valid(box, side / 2)
    small = box.copy()
    small.set_cell(np.eye(3) * 5.9, scale_atoms=True)
    assert not jax_md_valid(small, R_MAX)
    sheared = box.copy()  # every edge 7.2 A long, but 7.2 sin(45 deg) = 5.1 A between two faces
    sheared.set_cell([[side, 0, 0], [side / np.sqrt(2), side / np.sqrt(2), 0], [0, 0, side]])
    assert not jax_md_valid(sheared, R_MAX)
    slab = box.copy()
    slab.pbc = [True, True, False]
    assert not jax_md_valid(slab, R_MAX)


def test_bal_picks_distinct_frames_spread_wider_than_random_picks(trained, labelled, box):
    """MaxDist is greedy farthest-point selection, a 2-approximation of the best spread, not the
    optimum: beating every random pick is not guaranteed, so the checks are (1) at least the median
    spread of ten seeded random picks, what BAL is for, and (2) the bound the greedy pick does
    guarantee: any n + 2 pool frames have two within twice the pick's minimum distance. Seeds and
    model are fixed, so neither check is flaky."""
    from ilcampaign.engine.models.bal import bal_select

    pool = rattled(box, np.linspace(0.01, 0.3, 16), seed=5)
    n = 4
    result = bal_select(trained[0].model_dir, labelled[:8], pool, n)
    assert len(result.indices) == n == len(set(result.indices))
    assert all(0 <= index < len(pool) for index in result.indices)
    assert result.features_train.shape[0] == 8 and result.features_pool.shape[0] == len(pool)

    picked = min_pairwise_distance(result.features_pool[result.indices])
    rngs = [np.random.default_rng(seed) for seed in range(10)]
    random = [min_pairwise_distance(result.features_pool[rng.choice(len(pool), n, replace=False)]) for rng in rngs]
    assert picked >= np.median(random)
    rngs = [np.random.default_rng(seed) for seed in range(10)]
    wider = [min_pairwise_distance(result.features_pool[rng.choice(len(pool), n + 2, replace=False)]) for rng in rngs]
    assert picked >= max(wider) / 2 * (1 - 1e-5)


@pytest.mark.parametrize("n_models", [1, 2])
def test_jitted_create_params_equals_apax_bit_for_bit(box, n_models, tmp_path):
    """The compiled parameter initialisation gives apax's parameters exactly (same seed, same model)."""
    import jax
    from apax.config import Config
    from apax.train.checkpoints import create_params
    from apax.data.preprocessing import compute_nl

    from ilcampaign.engine.models.training import apax_config, jitted_create_params

    config = Config.model_validate(apax_config(tiny_model(), train_path=tmp_path / "train.extxyz",
                                               valid_path=tmp_path / "valid.extxyz", directory=tmp_path,
                                               n_train=1, n_valid=1))
    builder = config.model.get_builder()(config.model.model_dump())
    elements = np.zeros(119)
    model = builder.build_energy_derivative_model(scale=elements + 1.0, shift=elements, apply_mask=True,
                                                  init_box=np.asarray(box.cell.array))
    idx, offsets = compute_nl(box.positions, box.cell.array, R_MAX)
    sample = tuple(jax.numpy.asarray(x) for x in (box.positions, box.numbers, idx, box.cell.array, offsets))
    key = jax.random.PRNGKey(7)
    expected, expected_key = create_params(model, key, sample, n_models)
    params, next_key = jitted_create_params(model, key, sample, n_models)
    leaves, expected_leaves = jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(expected)
    assert len(leaves) == len(expected_leaves) > 0
    assert all(np.array_equal(a, b) for a, b in zip(leaves, expected_leaves))
    assert np.array_equal(next_key, expected_key)


def _apax_and_ours(model_dir, frames):
    """Each frame through apax's own calculator (fresh for every frame) and through one of ours."""
    from apax.md.ase_calc import ASECalculator

    from ilcampaign.engine.models.apax import load_calculator

    ours = load_calculator(model_dir)
    pairs = []
    for frame in frames:
        theirs = ASECalculator(model_dir)
        theirs.calculate(frame.copy(), ["energy", "forces"])
        ours.calculate(frame.copy(), ["energy", "forces"])
        pairs.append((dict(theirs.results), dict(ours.results)))
    return pairs


def test_the_calculator_gives_apax_results_for_every_box_kind(trained, labelled, box):
    """Our calculator (compiled step with the parameters as arguments) against apax's: a box that
    JAX's neighbour list serves, one too small for it (vesin's list), a molecule in free space,
    and atoms that change between calls (a set-up afresh each time)."""
    small = labelled[9].copy()
    small.set_cell(np.eye(3) * 5.9, scale_atoms=True)
    molecule = Atoms(box.numbers[:25], box.positions[:25])
    frames = [labelled[9], small, molecule, labelled[10], small]
    for theirs, ours in _apax_and_ours(trained[0].model_dir, frames):
        assert set(theirs) == set(ours)
        for name in theirs:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_calculators_of_one_architecture_share_their_compiled_step(trained, labelled):
    """A second calculator (other parameters, same architecture) reuses the first one's compiled step
    instead of tracing and compiling its own, and still computes with its own parameters."""
    import jax

    from ilcampaign.engine.models.apax import load_calculator

    first, second = load_calculator(trained[0].model_dir), load_calculator(trained[0].model_dir)
    second.params = jax.tree_util.tree_map(lambda leaf: leaf * 1.01, second.params)
    energies, compiled = [], []
    for calc in (first, second):
        atoms = labelled[11].copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        compiled.append(calc.shared_step._cache_size())
    assert energies[0] != energies[1]
    assert first.shared_step is second.shared_step and compiled[0] == compiled[1]
