"""ilcampaign.engine.analysis.inference_cost on a tiny real model: a [16, 16] two-member ensemble with r_max 4 A (so the
30-atom, 7.2 A BMIM BF4 box is too small for JAX MD and its 2 x 2 x 2 replica is not), trained for
a few epochs on GFN2-xTB labels. Times are measured, never compared: only their presence is checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms

from ilcampaign.campaign.spec import ApaxModel
from ilcampaign.engine.analysis.inference_cost import covered_seconds, inference_cost
from tests.conftest import one_pair_box, xtb_trained


@pytest.fixture(scope="module")
def box() -> Atoms:
    return one_pair_box()


@pytest.fixture(scope="module")
def model_dir(box, tmp_path_factory):
    """The ensemble, trained on 4 rattled copies of the box (2 more validate)."""
    model = ApaxModel(nn=[16, 16], n_basis=4, n_radial=3, r_max=4.0, epochs=5, batch_size=2, valid_batch_size=2)
    return xtb_trained(model, box, tmp_path_factory.mktemp("train"))


@pytest.mark.slow
def test_every_path_is_timed_where_valid_and_jax_is_nan_with_the_reason_elsewhere(model_dir, box, tmp_path):
    from ilcampaign.archive.arrays import write_dataset

    cost = inference_cost(model_dir, box, repeats=[2, (1, 1, 1)], paths=["jax", "jax+d3", "ase", "ase+d3"], d3=None,
                          d3_cutoffs=[4.0, 5.0], n_steps=5, warmup=5, n_timings=2, cache_dir=tmp_path / "jax")
    assert cost["n_atoms"].values.tolist() == [30, 240]  # sorted by size
    assert cost["replication"].values.tolist() == [[1, 1, 1], [2, 2, 2]]
    assert cost["path"].values.tolist() == ["jax", "ase", "jax+d3", "jax+d3", "ase+d3", "ase+d3"]
    np.testing.assert_array_equal(cost["d3_cutoff"].values, [np.nan, np.nan, 4.0, 5.0, 4.0, 5.0])
    assert cost["run"].values.tolist()[2] == "jax+d3 (cutoff 4 A)"

    times = cost["time_per_step"]
    for jax_run in ("jax", "jax+d3 (cutoff 4 A)", "jax+d3 (cutoff 5 A)"):
        assert np.isnan(times.sel(run=jax_run).isel(size=0))
        assert "box too small for JAX MD" in str(cost["not_run_reason"].sel(run=jax_run).isel(size=0).values)
    timed = np.ones(times.shape, dtype=bool)
    timed[[0, 2, 3], 0] = False
    assert np.all(np.isfinite(times.values[timed])) and np.all(times.values[timed] > 0)
    assert all(reason == "" for reason in cost["not_run_reason"].values[timed])
    samples = cost["time_per_step_samples"].values[timed]
    assert np.all(samples > 0) and np.all(cost["compile_time_samples"].values[timed] >= 0)
    assert np.all(cost["time_per_step_min"].values[timed] <= times.values[timed])
    assert np.all(times.values[timed] <= cost["time_per_step_max"].values[timed])
    np.testing.assert_allclose(cost["steps_per_second"].values[timed], 1 / times.values[timed])
    assert cost.attrs["jax_platform"] and cost.attrs["torch_device"] == "cpu" and cost.attrs["torch_threads"] >= 1
    assert cost.attrs["warmup_steps"] == 5 and cost.attrs["n_steps"] == 5
    write_dataset(tmp_path / "cost.nc", cost)  # refuses a numeric variable without units


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"paths": ["gpu"]}, "paths must be distinct"),
    ({"paths": ["ase", "ase"]}, "paths must be distinct"),
    ({"paths": ["ase+d3"], "d3_cutoffs": []}, "D3 cutoffs"),
    ({"paths": ["jax+d3"], "d3_cutoffs": []}, "D3 cutoffs"),
    ({"paths": ["ase"], "d3_cutoffs": [8.0]}, "D3 cutoffs"),
    ({"n_steps": 0}, "at least 1"),
    ({"repeats": []}, "at least one replication"),
    ({"repeats": [(2, 2)]}, "a replication is k or"),
    ({"repeats": [0]}, "a replication is k or"),
])
def test_bad_requests_are_refused_before_anything_runs(tmp_path, kwargs, message):
    request = {"repeats": [1], "paths": ["ase"], "d3": None, "d3_cutoffs": [], "n_steps": 5, "warmup": 5} | kwargs
    with pytest.raises(ValueError, match=message):
        inference_cost(tmp_path / "no-model", Atoms("H"), **request)


def test_compilation_spans_are_counted_once_where_they_nest():
    assert covered_seconds([]) == 0
    assert covered_seconds([(0.0, 10.0), (2.0, 3.0), (9.0, 12.0), (20.0, 21.0)]) == pytest.approx(13.0)
    assert math.isclose(covered_seconds([(5.0, 6.0), (1.0, 2.0)]), 2.0)
