"""Which MD engine a sampler runs on: never JAX MD where it would give wrong forces."""

from __future__ import annotations

from ilcampaign.campaign.spec import DispersionCorrection, MDSettings
from ilcampaign.campaign.units import to_internal
from ilcampaign.engine.models.apax import jax_md_valid
from ilcampaign.engine.structures.ions import conformer
from ilcampaign.engine.structures.packing import pack_box
from ilcampaign.engine.steps.md import choose_engine

NHC = {"thermostat": "nose_hoover_chain"}


def test_small_box_goes_to_ase_even_when_jax_is_requested():
    pair = pack_box([(conformer("CCCCn1cc[n+](C)c1", 0), 1), (conformer("F[B-](F)(F)F", 0), 1)],
                    to_internal("1.2 g/cm^3", "density"), seed=0, tolerance=2.0)
    assert not jax_md_valid(pair, 5.5)  # a ~7 A box against a 5.5 A cutoff
    engine, reason = choose_engine(MDSettings(engine="jax", **NHC), box_ok=jax_md_valid(pair, 5.5))
    assert engine == "ase" and "wrong forces" in reason


def test_engine_choice():
    assert choose_engine(MDSettings(**NHC), box_ok=True)[0] == "jax"
    assert choose_engine(MDSettings(**NHC, engine="ase"), box_ok=True)[0] == "ase"
    assert choose_engine(MDSettings(), box_ok=True)[0] == "ase"  # Langevin
    assert choose_engine(MDSettings(ensemble="npt", **NHC), box_ok=True)[0] == "ase"
    assert choose_engine(MDSettings(**NHC, box={"amplitude": 0.1, "oscillations": 1}), box_ok=True)[0] == "ase"
    bj, zero = DispersionCorrection(), DispersionCorrection(damping="zero")
    assert choose_engine(MDSettings(**NHC, hybrid_d3=True), box_ok=True, d3=bj)[0] == "jax"  # D3 in the loop
    assert choose_engine(MDSettings(**NHC, hybrid_d3=True), box_ok=True, d3=zero)[0] == "ase"  # BJ only in JAX
    assert choose_engine(MDSettings(**NHC, hybrid_d3=True), box_ok=False, d3=bj)[0] == "ase"
    assert choose_engine(MDSettings(ensemble="npt", **NHC, hybrid_d3=True), box_ok=True, d3=bj)[0] == "ase"


def test_npt_runs_in_jax_only_when_asked_for():
    """auto keeps ASE's barostat (the paper's) for NPT; engine: jax gets jax_md's MTK NPT, the MLP alone
    or with D3(BJ) without the tail correction (whose pressure term only ASE's stress has)."""
    bj, tail = DispersionCorrection(), DispersionCorrection(tail_correction=True)
    assert choose_engine(MDSettings(ensemble="npt"), box_ok=True)[0] == "ase"
    assert choose_engine(MDSettings(ensemble="npt", engine="jax"), box_ok=True)[0] == "jax"
    assert choose_engine(MDSettings(ensemble="npt", engine="jax", hybrid_d3=True), box_ok=True, d3=bj)[0] == "jax"
    engine, reason = choose_engine(MDSettings(ensemble="npt", engine="jax", hybrid_d3=True), box_ok=True, d3=tail)
    assert engine == "ase" and "tail" in reason
    assert choose_engine(MDSettings(ensemble="npt", engine="jax"), box_ok=False)[0] == "ase"
