"""The production runs of a spec as graph nodes: per grid point a packed, optimised (optionally
compressed and NVT-equilibrated) box and the run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ilcampaign.engine.graph.node import Node, model_node
from ilcampaign.engine.steps.geometry_optimisation import GeometryOptimisationStep
from ilcampaign.engine.steps.md import MDStep
from ilcampaign.engine.steps.pack import PackStep
from ilcampaign.engine.steps.production import ProductionStep

if TYPE_CHECKING:
    from ilcampaign.campaign.spec import CampaignSpec, ProductionRun


def unit_mass(spec: CampaignSpec) -> float:
    """Mass of one formula unit (amu), from the ions' SMILES."""
    from ase.data import atomic_masses, atomic_numbers

    from ilcampaign.engine.structures.guards import template

    return sum(n * sum(atomic_masses[atomic_numbers[s]] for s in template(ion.smiles).symbols)
               for n, ion in zip(spec.formula_unit(), spec.system.ions))


def _seed(spec: CampaignSpec, name: str) -> int:
    """A step's seed from the campaign seed and its name (adding a run changes no other run's seed)."""
    import hashlib

    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return (spec.campaign.seed + spec.production.seed_offset + digest) % 2**31


def temperature_label(temperature: float) -> str:
    return f"{temperature:g}K"


def production_nodes(spec: CampaignSpec, base: Path) -> list[Node]:
    """Every production grid point: pack (per size), optimise (per model and size), then per
    temperature, from that optimised box, compress and NVT-equilibrate if asked, then the run (the
    temperatures of a size run side by side, none waits for another)."""
    nodes: list[Node] = []
    for run_name, run in spec.production.runs.items():
        group = f"production {run_name}"
        for pairs in run.ion_pairs:
            pack = f"production.{run_name}.{pairs}.pack"
            nodes.append(Node(pack, _pack(spec, run, pairs, _seed(spec, pack), base), inputs={"molecules": "molecules"}, group=group))
            for model in spec.resolve_models(run.models):
                box = pack
                if run.box.optimise is not None:
                    box = f"production.{run_name}.{model}.{pairs}.optimise"
                    nodes.append(Node(box, _optimise(spec, run), inputs={"model": model_node(model), "start": pack},
                                      group=group))
                for temperature in run.temperatures:
                    start = box  # each temperature from the size's packed (optimised) box, not another's
                    point = f"production.{run_name}.{model}.{temperature_label(temperature)}.{pairs}"
                    for phase, sampler in _preparation(spec, run, pairs, temperature, base):
                        nodes.append(Node(f"{point}.{phase}", _md(spec, run, sampler, _seed(spec, f"{point}.{phase}")),
                                          inputs={"model": model_node(model), "start": start}, group=group))
                        start = f"{point}.{phase}"
                    for replica in range(run.replicas):
                        name = point if run.replicas == 1 else f"{point}.r{replica}"
                        nodes.append(Node(name, _production(spec, run, _sampler(run, temperature), _seed(spec, name)),
                                          inputs={"model": model_node(model), "start": start}, group=group,
                                          notes=f"{run.ensemble.upper()} {temperature:g} K, {pairs} ion pairs"))
    return nodes


def production_points(spec: CampaignSpec, runs: list[str] | None) -> list[tuple[str, dict[str, Any]]]:
    """(node name, facts analyses need) of every production run of ``runs`` (None: all)."""
    points = []
    for run_name, run in spec.production.runs.items():
        if runs is not None and run_name not in runs:
            continue
        for pairs in run.ion_pairs:
            for model in spec.resolve_models(run.models):
                for temperature in run.temperatures:
                    point = f"production.{run_name}.{model}.{temperature_label(temperature)}.{pairs}"
                    for replica in range(run.replicas):
                        points.append((point if run.replicas == 1 else f"{point}.r{replica}", {
                            "run": run_name, "model": model, "temperature_K": float(temperature),
                            "ion_pairs": pairs, "replica": replica, "ensemble": run.ensemble,
                            "equilibration_fs": float(run.equilibration)}))
    return points


def target_density(spec: CampaignSpec, run: ProductionRun, temperature: float | None, base: Path) -> float:
    """The density (amu/A^3) a run's box is brought to: the measured one at ``temperature`` with
    ``density_reference``, else ``box.density`` or the system's."""
    if run.box.density_reference is None or temperature is None:
        return run.box.density or spec.system.density
    from ilcampaign.campaign.units import to_internal
    from ilcampaign.engine.analysis.reference_data import load_reference

    name = run.box.density_reference
    rows = load_reference(name, spec.references[name], base).at(temperature)
    if not rows:
        raise ValueError(f"references.{name} has no density at {temperature:g} K for the production box")
    return to_internal(f"{sum(r.value for r in rows) / len(rows)} {spec.references[name].unit}", "density")


def _pack(spec: CampaignSpec, run: ProductionRun, pairs: int, seed: int, base: Path):
    """The box of ``pairs`` formula units: packed at ``pack_density`` and, without an MD
    compression, moved rigidly to the target at once."""
    packing = run.box.pack_density or target_density(spec, run, None, base)
    density = packing if run.box.compress_steps else target_density(spec, run, None, base)
    ions = [ion.model_copy(update={"count": n * pairs}) for n, ion in zip(spec.formula_unit(), spec.system.ions)]
    return PackStep(ions=ions, density=density, packing_density=packing, tolerance=spec.system.packmol_tolerance,
                seed=seed, contacts=spec.guards.contacts)


def _optimise(spec: CampaignSpec, run: ProductionRun):
    from ilcampaign.campaign.spec import GeometryOptimisationSettings as Settings

    settings = Settings.model_validate(run.box.optimise.model_dump(mode="json"))
    return GeometryOptimisationStep(settings=settings, checkpoint_every=spec.checkpoints.optimisation_steps,
                                    contacts=spec.guards.contacts, smiles=[ion.smiles for ion in spec.system.ions])


def _sampler(run: ProductionRun, temperature: float, **changes: Any):
    """The MD settings of a production run at ``temperature`` (no uncertainty stop), with ``changes``."""
    from ilcampaign.campaign.spec import MDSettings

    fields = run.model_dump(mode="json", include={"ensemble", "thermostat", "thermostat_time", "friction", "pressure",
                                                  "barostat_time", "timestep", "interval", "engine", "hybrid_d3"})
    fields.update(temperature=float(temperature), n_steps=run.n_steps, uncertainty_threshold=None)
    return MDSettings.model_validate({**fields, **changes})


def _preparation(spec: CampaignSpec, run: ProductionRun, pairs: int, temperature: float,
                 base: Path) -> list[tuple[str, Any]]:
    """The MD phases between the optimised box and the run: ``compress`` (NVT, the cell ramped
    linearly to the target density) and ``nvt`` (NVT at the run's cell), as asked."""
    phases = []
    density = target_density(spec, run, temperature, base)
    if run.box.compress_steps:
        length = (pairs * unit_mass(spec) / density) ** (1 / 3)
        steps = run.box.compress_steps
        phases.append(("compress", _sampler(run, temperature, ensemble="nvt", n_steps=steps, interval=steps,
                                            box={"end": f"{length} A"}, engine="auto")))
    if run.box.nvt is not None:
        steps = max(1, round(run.box.nvt / run.timestep))
        phases.append(("nvt", _sampler(run, temperature, ensemble="nvt", n_steps=steps, interval=steps)))
    return phases


def _d3(spec: CampaignSpec, run: ProductionRun, sampler: Any):
    """The D3 term of a hybrid run (the d3 section, with the run's cutoff), or None; integrated every
    step (``mts_interval`` and ``mts_split`` at their defaults) in a phase that goes through ASE (the
    compression's box ramp)."""
    if not run.hybrid_d3:
        return None
    changes: dict[str, Any] = {} if run.d3_cutoff is None else {"cutoff": run.d3_cutoff, "cn_cutoff": run.d3_cutoff}
    if not sampler.runs_in_jax_md(spec.d3):
        changes |= {name: type(spec.d3).model_fields[name].default for name in ("mts_interval", "mts_split")}
    return spec.d3.model_copy(update=changes) if changes else spec.d3


def _md(spec: CampaignSpec, run: ProductionRun, sampler: Any, seed: int):
    return MDStep(sampler=sampler, seed=seed, d3=_d3(spec, run, sampler),
              checkpoint_every=spec.checkpoints.md_steps, temperature_guard=spec.guards.temperature,
              contacts=spec.guards.contacts, smiles=[ion.smiles for ion in spec.system.ions])


def _production(spec: CampaignSpec, run: ProductionRun, sampler: Any, seed: int):
    return ProductionStep(sampler=sampler, seed=seed, d3=_d3(spec, run, sampler),
                          checkpoint_every=spec.checkpoints.md_steps, temperature_guard=spec.guards.temperature,
                          contacts=spec.guards.contacts, smiles=[ion.smiles for ion in spec.system.ions])
