"""Table 1 before anything runs: per iteration its samplers, conditions (temperature, density, box
or pressure), selection, and the training / validation / test counts the schedule implies.

Counts are what the spec asks for: a selection rule picks ``n`` frames (``all``: the whole
pool, as far as it is known before running), so where an MD run stops early and offers fewer
candidates, fewer are labelled. Computed from the spec alone (no engine, no archive)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ilcampaign.campaign.spec import (
    BoxRamp,
    CampaignSpec,
    InitialFile,
    InitialMD,
    InitialRattle,
    MDSettings,
    Stage,
    TemperatureRamp,
)
from ilcampaign.campaign.units import from_internal

RULE_NAMES = {"bal": "BAL", "random": "random", "all": "all"}


@dataclass
class Row:
    """One line of the table; counts are cumulative after the iteration."""

    iteration: str
    sampling: str
    temperature: str
    conditions: str
    run: str
    selection: str
    new_labels: int | None  # configurations labelled by the reference method (None: not known before running)
    selected: int | None  # configurations added to the dataset
    train: int | None
    valid: int | None
    test: int | None
    notes: list[str] = field(default_factory=list)
    reference_calls: int | None = None  # where they differ from new_labels: reference-driven MD, a call a step
    driver_steps: int = 0  # MD steps of a driver other than the reference (initial data)

    @property
    def calls(self) -> int | None:
        """Reference calculations the row costs: one per new label, or one per step of reference MD."""
        return self.new_labels if self.reference_calls is None else self.reference_calls


def table(spec: CampaignSpec) -> list[Row]:
    """Table 1 of a spec: the initial data, then one row per iteration (``repeat`` expanded)."""
    mass = _box_mass(spec)
    initial, counts = _initial_row(spec)
    rows = [initial]
    density = {"initial_data": spec.system.density}  # step -> density of its end structures, where known
    chain = "initial_data"
    pool = counts.pop("pool")
    for stage in spec.stages():
        it, name = stage.planned.iteration, stage.planned.name
        if it.relabel is not None:
            dropped = [split for split in ("train", "valid", "test") if split not in it.relabel.splits]
            labelled = sum(counts[split] or 0 for split in it.relabel.splits)
            for split in dropped:
                counts[split] = 0
            rows.append(Row(name, "relabel: " + _overrides(it.relabel.reference), "", "", "",
                            f"splits {', '.join(it.relabel.splits)}", labelled, 0, **counts,
                            notes=[f"{split} frames dropped" for split in dropped]))
            continue
        samplers, temperature, conditions, runs, sizes = [], [], [], [], {}
        for sampler_name, sampler in it.samplers.items():
            start = getattr(sampler, "start", None)
            origin = (start.step or chain) if start is not None else None
            samplers.append(_kind(sampler))
            if sampler.kind == "md":
                temperature.append(_temperature(sampler.temperature))
                conditions.append(_md_conditions(sampler, density.get(origin), mass))
                runs.append(f"{sampler.n_steps:,} x {sampler.timestep:g} fs, frame/{sampler.interval}, "
                            + ("stop at sigma > " f"{sampler.uncertainty_threshold:g} eV/A"
                               if sampler.uncertainty_threshold is not None else "no stop"))
                sizes[sampler_name] = sampler.n_steps // sampler.interval
                density[f"{name}.{sampler_name}"] = _md_end_density(sampler, density.get(origin), mass)
            elif sampler.kind == "geometry_optimisation":
                density[f"{name}.{sampler_name}"] = density.get(origin)
                sizes[sampler_name] = None
            elif sampler.kind == "volume_scan":
                low, high = sampler.length_factors
                known = density.get(origin)
                conditions.append("VS " + (f"{_rho(known / high**3)}-{_rho(known / low**3)} g/cm^3" if known else
                                           f"x{low:g}-x{high:g} length"))
                sizes[sampler_name] = sampler.n_frames * start.count
                density[f"{name}.{sampler_name}"] = known
            elif sampler.kind == "conformers":
                conditions.append(f"{_rho(sampler.density)} g/cm^3")
                sizes[sampler_name] = sampler.n_boxes
                density[f"{name}.{sampler_name}"] = sampler.density
            else:  # the initial pool
                sizes[sampler_name] = pool
            if sampler.kind in ("md", "geometry_optimisation", "volume_scan"):
                chain = f"{name}.{sampler_name}"
        added, new_labels, picked = _select(spec, stage, sizes)
        for split, n in added.items():
            counts[split] = None if counts[split] is None or n is None else counts[split] + n
        rows.append(Row(name, ", ".join(samplers), "; ".join(dict.fromkeys(temperature)),
                        "; ".join(dict.fromkeys(c for c in conditions if c)), "; ".join(runs),
                        ", ".join(picked), new_labels, _sum(added.values()), **counts))
        if "initial_pool" in [s.kind for s in it.samplers.values()] and pool is not None:
            pool = max(pool - (added["train"] or 0) - (added["valid"] or 0), 0)
    return rows


def _initial_row(spec: CampaignSpec) -> tuple[Row, dict]:
    section, split = spec.initial_data, spec.initial_split
    calls, driver_steps = None, 0
    if isinstance(section, InitialMD):
        n, driver = section.n_steps // section.interval, driver_name(section.driver)
        sampling = f"{driver} MD"
        temperature, run = f"{section.temperature:g}", f"{section.n_steps:,} x {section.timestep:g} fs, frame/{section.interval}"
        if section.driver == "reference":
            calls = section.n_steps  # every MD step is a reference calculation; the kept frames are labels
        else:
            driver_steps = section.n_steps  # the reference labels only the kept frames
    elif isinstance(section, InitialRattle):
        n, sampling, temperature, run = section.n_frames, "rattled box", "", f"stdev {section.stdev:g} A"
    else:
        assert isinstance(section, InitialFile)
        n, sampling, temperature, run = None, f"file {section.path}", "", ""
    test = split.n_test
    rest = None if n is None else n - test
    valid = split.n_valid if split.n_valid is not None else (
        None if rest is None else max(1, round(spec.model.validation_fraction * rest)) if rest > 1 else 0)
    train = split.n_train if split.n_train is not None else (None if rest is None or valid is None else rest - valid)
    pool = None if split.n_train is None or n is None else n - test - valid - train
    notes = [f"before the {split.energy_outlier_sigma:g} sigma energy filter"] if split.energy_outlier_sigma else []
    row = Row("initial", sampling, temperature, f"{_rho(spec.system.density)} g/cm^3", run,
              f"test {test}, valid {valid}, train {train}" + (f", pool {pool}" if pool else ""),
              n, None if train is None or valid is None else train + valid, train, valid, test, notes, calls,
              driver_steps)
    return row, {"train": train, "valid": valid, "test": test, "pool": pool}


def driver_name(driver: Any) -> str:
    """What integrates the initial MD, in a word or two: reference, GFN-FF, GFN1-xTB, ..."""
    if driver == "reference":
        return "reference"
    return "GFN-FF" if driver.kind == "gfnff" else driver.method


def initial_cost(spec: CampaignSpec) -> str:
    """The initial data's cost in words: reference calls, and MD steps by a driver other than the reference."""
    row, _ = _initial_row(spec)
    section = spec.initial_data
    calls = "?" if row.calls is None else f"{row.calls:,}"
    if isinstance(section, InitialMD) and section.driver == "reference":
        return (f"initial data: {calls} reference calls ({section.n_steps:,} MD steps driven by the reference; "
                f"{row.new_labels:,} kept frames are labels)")
    text = f"initial data: {calls} reference calls (single points of the kept frames)"
    if row.driver_steps:
        text += f"; {row.driver_steps:,} MD steps by {driver_name(section.driver)}"
    return text


def _select(spec: CampaignSpec, stage: Stage, sizes: dict[str, int | None]) -> tuple[dict, int | None, list[str]]:
    """Frames the rules add per split, new reference calculations, and the rules in words. A rule
    takes ``n`` frames (all of a known pool for ``all``) from the candidates earlier rules left."""
    it = stage.planned.iteration
    left = dict(sizes)
    added = {"train": 0, "valid": 0, "test": 0}
    auto, new_labels, words = 0, 0, []
    for rule in it.selection:
        names = rule.samplers or list(it.samplers)
        available = None if any(left[name] is None for name in names) else sum(left[name] for name in names)
        if rule.kind == "all" and available is None:
            return {"train": None, "valid": None, "test": 0}, None, ["all (pool size unknown before running)"]
        n = available if rule.kind == "all" else rule.n if available is None else min(rule.n, available)
        remaining = n
        for name in names:
            if left[name] is not None:
                taken = min(left[name], remaining)
                left[name], remaining = left[name] - taken, remaining - taken
        if not all(it.samplers[name].kind == "initial_pool" for name in names):
            new_labels += n
        if rule.split == "auto":
            auto += n
        else:
            added[rule.split] += n
        where = f" from {', '.join(rule.samplers)}" if rule.samplers and len(it.samplers) > 1 else ""
        words.append(f"{RULE_NAMES[rule.kind]} {n}{where}" + (f" -> {rule.split}" if rule.split != "auto" else ""))
    valid = 0 if spec.model.fixed_validation else (max(1, round(spec.model.validation_fraction * auto))
                                                   if auto > 1 else 0)
    added["valid"] += valid
    added["train"] += auto - valid
    return added, new_labels, words


def _kind(sampler) -> str:
    if isinstance(sampler, MDSettings):
        thermostat = {"langevin": "Langevin", "nose_hoover_chain": "Nose-Hoover"}[sampler.thermostat]
        kind = "NPT" if sampler.ensemble == "npt" else f"NVT ({thermostat})"
        return kind + (" + D3 hybrid" if sampler.hybrid_d3 else "")
    return {"geometry_optimisation": "GeoOpt", "volume_scan": "VS", "conformers": "conformers",
            "initial_pool": "initial pool"}[sampler.kind]


def _temperature(ramp: TemperatureRamp) -> str:
    end = ramp.start if ramp.end is None else ramp.end
    if end == ramp.start and (ramp.amplitude == 0 or ramp.oscillations == 0):
        return f"{ramp.start:g}"
    text = f"{ramp.start:g}-{end:g}"
    if ramp.amplitude and ramp.oscillations:
        text += f" (+-{ramp.amplitude:g}, {ramp.oscillations:g} osc.)"
    return text


def _md_conditions(sampler: MDSettings, start_density: float | None, mass: float) -> str:
    if sampler.ensemble == "npt":
        return f"{from_internal(sampler.pressure, 'pressure', 'bar'):g} bar"
    if sampler.box is None:
        return f"{_rho(start_density)} g/cm^3" if start_density else "start box"
    lengths = _box_lengths(sampler.box, start_density, mass, sampler.n_steps)
    if lengths is None:
        return "box ramp"
    densities = mass / lengths**3
    return f"{_rho(densities.min())}-{_rho(densities.max())} g/cm^3 (L {lengths.min():.2f}-{lengths.max():.2f} A)"


def _md_end_density(sampler: MDSettings, start_density: float | None, mass: float) -> float | None:
    if sampler.ensemble == "npt":
        return None
    if sampler.box is None:
        return start_density
    lengths = _box_lengths(sampler.box, start_density, mass, sampler.n_steps)
    return None if lengths is None else mass / lengths[-1] ** 3


def _box_lengths(box: BoxRamp, start_density: float | None, mass: float, n_steps: int) -> np.ndarray | None:
    """Cubic cell length over the run (IPSuite's BoxOscillatingRampModifier, sampled finely)."""
    if start_density is None:
        return None
    length0 = (mass / start_density) ** (1 / 3)
    f = np.linspace(0, 1, 20001)
    r = f if box.ramp_oscillations is None else np.minimum(f * box.oscillations / box.ramp_oscillations, 1.0)
    end = length0 if box.end is None else box.end
    return length0 + r * (end - length0) + box.amplitude * np.sin(2 * np.pi * f * box.oscillations)


def _box_mass(spec: CampaignSpec) -> float:
    """Mass of the system's box in amu (ASE's atomic masses, hydrogens included)."""
    from ase.data import atomic_masses
    from rdkit import Chem

    mass = 0.0
    for ion in spec.system.ions:
        mol = Chem.AddHs(Chem.MolFromSmiles(ion.smiles))
        mass += ion.count * sum(atomic_masses[atom.GetAtomicNum()] for atom in mol.GetAtoms())
    return mass


def _overrides(overrides: dict) -> str:
    return ", ".join(f"{key}: {value}" for key, value in overrides.items())


def _sum(values) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _rho(density: float) -> str:
    """A density (amu/A^3) in g/cm^3, 3 decimals (as Table 1)."""
    return f"{from_internal(density, 'density', 'g/cm^3'):.3f}"
