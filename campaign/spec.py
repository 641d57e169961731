"""The campaign spec: pydantic models for every section of a spec YAML file.

Each section is a sibling field of :class:`CampaignSpec`; variants (reference method, initial
data source) are discriminated unions picked by ``kind:``. Quantities accept units
(``"800 Ry"``, ``"0.5 fs"``) and are stored in ASE units. This module imports nothing else of
ilcampaign but the unit helpers, so the engine and the CLI can both build on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from campaign.units import Density, Force, Length, PlaneWaveCutoff, Pressure, Temperature, Time


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors.

    Round trips go through ``model_dump(mode="json")``, which writes quantities as "value unit"
    strings, so re-validating never converts a unit twice.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)


def not_hashed(**kwargs: Any) -> Any:
    """A field that changes how a step runs but not what it computes (paths, threads)."""
    return Field(json_schema_extra={"hashed": False}, **kwargs)


# --------------------------------------------------------------------------- campaign


class Author(Section):
    name: str = Field(min_length=1)
    orcid: str | None = Field(default=None, pattern=r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
    affiliation: str | None = None


class CampaignInfo(Section):
    """Who runs which study; ``seed`` drives every random choice of the campaign."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="used for the work directory")
    seed: int = Field(default=0, ge=0, lt=2**31)
    description: str = ""
    authors: list[Author] = Field(default_factory=list)


# --------------------------------------------------------------------------- system


class Ion(Section):
    """One ion species: its SMILES (formal charges included) and how many are in the box."""

    name: str = Field(pattern=r"^[A-Za-z0-9_+-]+$")
    smiles: str
    count: int = Field(ge=1)

    @field_validator("smiles")
    @classmethod
    def _parse_smiles(cls, smiles: str) -> str:
        formal_charge(smiles)
        return smiles


def formal_charge(smiles: str) -> int:
    """Net formal charge of a SMILES string, parsed with RDKit; ValueError if RDKit rejects it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}; check brackets, ring closures and charges")
    return Chem.GetFormalCharge(mol)


class System(Section):
    """The simulation box: ions, density, and how PACKMOL builds it."""

    ions: list[Ion] = Field(min_length=1)
    density: Density = Field(gt=0, description="target mass density of the box")
    packing_density: Density | None = Field(
        default=None,
        gt=0,
        description="density PACKMOL packs at (defaults to `density`); if lower, molecules are then moved "
        "rigidly (centres of mass scaled) to the target density",
    )
    packmol_tolerance: Length = Field(default=2.0, gt=0, description="minimum distance between molecules")

    @model_validator(mode="after")
    def _check(self) -> System:
        names = [ion.name for ion in self.ions]
        if len(set(names)) != len(names):
            raise ValueError(f"ion names must be unique, got {names}")
        charge = sum(formal_charge(ion.smiles) * ion.count for ion in self.ions)
        if charge != 0:
            parts = ", ".join(f"{ion.count} x {ion.name} ({formal_charge(ion.smiles):+d})" for ion in self.ions)
            raise ValueError(f"the ion set is not neutral: {parts} gives a net charge of {charge:+d}; adjust the counts")
        if self.packing_density is None:
            self.packing_density = self.density
        if self.packing_density > self.density * (1 + 1e-9):
            raise ValueError("packing_density must not exceed density (pack loose, then compress)")
        return self


# --------------------------------------------------------------------------- reference methods


class XTB(Section):
    """GFN-xTB through tblite: the fast embedded reference method."""

    kind: Literal["xtb"] = "xtb"
    method: Literal["GFN2-xTB", "GFN1-xTB"] = "GFN2-xTB"
    electronic_temperature: Temperature = Field(default=300.0, gt=0)
    accuracy: float = Field(default=1.0, gt=0)
    max_iterations: int = Field(default=250, ge=1)
    threads: int = not_hashed(
        default=1, ge=1, description="OpenMP threads; more is faster but not bit-reproducible (parallel sums)"
    )


class D3(Section):
    """Grimme D3 with Becke-Johnson damping, as CP2K's PAIR_POTENTIAL block."""

    reference_functional: str = "B97-3c"
    cutoff: Length = Field(default=7.93766, gt=0, description="R_CUTOFF of the pair potential")
    three_body: bool = Field(default=True, description="CALCULATE_C9_TERM")
    short_range_correction: bool = True
    parameter_file: str = "dftd3.dat"


class SCF(Section):
    """SCF settings: orbital transformation (OT) with an outer loop, as in the paper."""

    guess: Literal["restart", "atomic", "core"] = "restart"
    max_scf: int = Field(default=100, ge=1)
    eps_scf: float = Field(default=1e-6, gt=0)
    minimizer: Literal["DIIS", "CG", "BROYDEN", "SD"] = "DIIS"
    preconditioner: Literal["FULL_SINGLE_INVERSE", "FULL_ALL", "FULL_KINETIC"] = "FULL_SINGLE_INVERSE"
    outer_max_scf: int = Field(default=100, ge=1)
    outer_eps_scf: float = Field(default=1e-6, gt=0)


class CP2K(Section):
    """CP2K Quickstep DFT through ASE's CP2K calculator (production reference)."""

    kind: Literal["cp2k"] = "cp2k"
    functional: str = Field(default="B97-3c", description="B97-3c (via &BECKE97) or any CP2K XC shortcut, e.g. PBE")
    basis_set: str = "TZVP-GTH"
    basis_set_file: str = "GTH_BASIS_SETS"
    pseudopotential: str = "GTH-PBE"
    potential_file: str = "GTH_POTENTIALS"
    cutoff: PlaneWaveCutoff = Field(default="800 Ry", gt=0, description="plane-wave cutoff of the finest grid")
    rel_cutoff: PlaneWaveCutoff = Field(default="60 Ry", gt=0)
    ngrids: int = Field(default=5, ge=1)
    eps_pgf_orb: float = Field(default=1e-4, gt=0)
    eps_filter_matrix: float = Field(default=0.0, ge=0)
    scf: SCF = Field(default_factory=SCF)
    d3: D3 | None = Field(default_factory=D3, description="null for no dispersion correction")
    extra_input: str = Field(default="", description="raw CP2K input merged into the generated one")
    command: str = not_hashed(default="cp2k_shell", description="cp2k shell executable")
    threads: int = not_hashed(default=1, ge=1, description="OMP_NUM_THREADS for CP2K")


Reference = Annotated[Union[XTB, CP2K], Field(discriminator="kind")]


# --------------------------------------------------------------------------- initial data


class InitialMD(Section):
    """Configurations from a short Langevin MD run driven by the reference method."""

    kind: Literal["md"] = "md"
    temperature: Temperature = Field(default=500.0, gt=0)
    timestep: Time = Field(default=0.5, gt=0)
    n_steps: int = Field(default=200, ge=1)
    interval: int = Field(default=10, ge=1, description="keep a frame every `interval` steps")
    friction: float = Field(default=0.01, gt=0, description="Langevin friction in ASE units (1/ASE time)")
    chunk: int = Field(default=20, ge=1, description="steps per checkpointed task (resume granularity)")

    @model_validator(mode="after")
    def _check(self) -> InitialMD:
        if self.interval > self.n_steps:
            raise ValueError("interval must not exceed n_steps: no frame would be kept")
        return self


class InitialRattle(Section):
    """Configurations made by rattling the packed box with Gaussian displacements."""

    kind: Literal["rattle"] = "rattle"
    n_frames: int = Field(default=20, ge=1)
    stdev: Length = Field(default=0.05, gt=0)


class InitialFile(Section):
    """Configurations read from a trajectory file (any format ASE reads), e.g. a classical MD run.

    Frames carry their total charge in ``info["charge"]`` where the format has it (extxyz).
    """

    kind: Literal["file"] = "file"
    path: str = not_hashed(description="trajectory file, relative to the spec; its content is hashed")
    format: str | None = Field(default=None, description="ASE format name; guessed from the suffix if null")
    every: int = Field(default=1, ge=1, description="keep every n-th frame")
    max_frames: int | None = Field(default=None, ge=1)


InitialData = Annotated[Union[InitialMD, InitialRattle, InitialFile], Field(discriminator="kind")]


class InitialSplit(Section):
    """How the labelled initial data is divided before the first model (the paper: a 3 sigma energy
    filter, then 100 training, 100 validation and 500 test frames; the rest is the pool an
    ``initial_pool`` sampler picks from later). Frames are drawn by a seeded permutation."""

    energy_outlier_sigma: float | None = Field(
        default=None, gt=0, description="drop frames whose energy per atom is further than this many sigma"
    )
    n_test: int = Field(default=0, ge=0, description="held out: never trained or validated on")
    n_valid: int | None = Field(default=None, ge=1, description="null: model.validation_fraction of the rest")
    n_train: int | None = Field(default=None, ge=1, description="null: every frame not held out or validating")

    @model_validator(mode="after")
    def _check(self) -> InitialSplit:
        if self.n_train is not None and self.n_valid is None:
            raise ValueError("n_train needs n_valid: with both set, the frames left over form the initial pool")
        return self


# --------------------------------------------------------------------------- failures


class Failures(Section):
    """What to do when a reference calculation fails (SCF not converged, crash).

    ``retry``: try the overrides in ``retry_with`` in order (each a partial reference section),
    then skip the configuration. ``skip``: record and go on. ``stop``: record and stop the run.
    Every failure is recorded with its message; the step fails when more than
    ``max_failed_fraction`` of its configurations failed.
    """

    on_failure: Literal["retry", "skip", "stop"] = "retry"
    retry_with: list[dict[str, Any]] | None = Field(
        default=None, description="defaults per method: xtb raises the electronic temperature"
    )
    uniform_settings: bool = Field(
        default=False,
        description="true: once any configuration needed a retry setting, relabel every configuration with "
        "the strongest setting used, so the dataset has one setting; false: record the setting per frame",
    )
    max_failed_fraction: float = Field(default=0.05, ge=0, le=1)


DEFAULT_RETRIES: dict[str, list[dict[str, Any]]] = {
    "xtb": [{"electronic_temperature": 1000.0}, {"electronic_temperature": 3000.0}],
    "cp2k": [{"scf": {"guess": "atomic", "max_scf": 300}}],
}


def brief(exc: ValueError) -> str:
    """A nested validation error in one line: ``field: problem`` per error."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
        for e in exc.errors()
    )


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (dicts merge, other values replace)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- dispersion


class DispersionCorrection(Section):
    """D3 from torch-dftd, added on top of hybrid models and used to relabel datasets with or
    without D3. Defaults: the paper's D3(BJ) with B97-3c parameters, cutoffs of 7.94 A ("8 A")."""

    functional: str = Field(default="b97-3c", description="torch-dftd xc name")
    damping: Literal["bj", "zero"] = "bj"
    cutoff: Length = Field(default=7.93766, gt=0)
    cn_cutoff: Length = Field(default=7.93766, gt=0, description="coordination-number cutoff")
    skin: Length = Field(default=0.5, ge=0, description="neighbour-list skin; 0 rebuilds every step")
    dtype: Literal["float32", "float64"] = "float32"


# --------------------------------------------------------------------------- model


class Ensemble(Section):
    """apax ensemble: ``full`` trains independent members, ``shallow`` shares all but the last layer."""

    kind: Literal["full", "shallow"] = "full"
    n_members: int = Field(default=2, ge=2, description="at least 2: the spread is the uncertainty")


class LossWeights(Section):
    energy: float = Field(default=1.0, ge=0)
    forces: float = Field(default=4.0, ge=0)
    stress: float = Field(default=0.2, ge=0)


class LearningRates(Section):
    embedding: float = Field(default=0.01, gt=0)
    network: float = Field(default=0.005, gt=0)
    scale: float = Field(default=0.001, gt=0)
    shift: float = Field(default=0.05, gt=0)


class ApaxModel(Section):
    """A GMNN potential trained with apax; defaults are the paper's LotF settings (Methods)."""

    kind: Literal["apax"] = "apax"
    n_basis: int = Field(default=7, ge=1)
    n_radial: int = Field(default=5, ge=1)
    r_min: Length = Field(default=0.7, gt=0)
    r_max: Length = Field(default=5.5, gt=0)
    nn: list[int] = Field(default_factory=lambda: [512, 512], min_length=1)
    ensemble: Ensemble | None = Field(
        default_factory=Ensemble, description="null: a single model, which has no force uncertainty"
    )
    loss: LossWeights = Field(default_factory=LossWeights)
    learning_rates: LearningRates = Field(default_factory=LearningRates)
    batch_size: int = Field(default=4, ge=1)
    valid_batch_size: int = Field(default=100, ge=1)
    epochs: int = Field(default=500, ge=1)
    patience: int | None = Field(default=None, ge=1)
    zbl: bool = Field(default=True, description="ZBL repulsion (apax empirical_corrections)")
    seed: int = Field(default=1, ge=0)
    validation_fraction: float = Field(default=0.5, gt=0, lt=1, description="of each new batch of labels")
    fixed_validation: bool = Field(default=False, description="true: only the first data's validation set")
    apax_extra: dict[str, Any] = Field(default_factory=dict, description="raw apax config merged in")

    @model_validator(mode="after")
    def _check(self) -> ApaxModel:
        if self.r_min >= self.r_max:
            raise ValueError("r_min must be smaller than r_max")
        return self


# --------------------------------------------------------------------------- sampling


class TemperatureRamp(Section):
    """T(t) = start + t/t_end (end - start) + amplitude sin(2 pi t / t_per) (paper eqn 9);
    ``oscillations`` over the run sets t_per. A plain number means a constant temperature."""

    start: Temperature = Field(gt=0)
    end: Temperature | None = Field(default=None, gt=0)
    amplitude: Temperature = Field(default=0.0, ge=0)
    oscillations: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _constant(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"start": value}


class DensityRamp(Section):
    """Box density following eqn 9 (the box is scaled, molecules rigidly moved with it)."""

    start: Density = Field(gt=0)
    end: Density | None = Field(default=None, gt=0)
    amplitude: Density = Field(default=0.0, ge=0)
    oscillations: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _constant(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"start": value}


class MDSampler(Section):
    """MD with the current ensemble, stopped when the force uncertainty (eqn 8) passes a threshold."""

    kind: Literal["md"] = "md"
    ensemble: Literal["nvt", "npt"] = "nvt"
    thermostat: Literal["langevin", "nose_hoover_chain"] = "langevin"
    friction: float = Field(default=0.01, gt=0, description="Langevin friction, ASE units")
    temperature: TemperatureRamp = Field(default=298.15)
    density: DensityRamp | None = Field(default=None, description="NVT only; null keeps the box")
    pressure: Pressure = Field(default="1.01325 bar", description="NPT")
    thermostat_time: Time = Field(default=25.0, gt=0, description="NPT thermostat time")
    barostat_time: Time = Field(default=75.0, gt=0, description="NPT barostat time")
    timestep: Time = Field(default=0.5, gt=0)
    n_steps: int = Field(default=50000, ge=1)
    interval: int = Field(default=10, ge=1, description="keep a frame every `interval` steps")
    uncertainty_threshold: Force | None = Field(default=0.5, gt=0, description="null: never stop early")
    engine: Literal["auto", "jax", "ase"] = Field(
        default="auto", description="auto: apax JAX MD where valid (NVT, box >= 2 r_max), else ASE"
    )
    hybrid_d3: bool = Field(default=False, description="sample with the model plus torch-dftd D3 (ASE)")

    @model_validator(mode="after")
    def _check(self) -> MDSampler:
        if self.ensemble == "npt" and self.density is not None:
            raise ValueError("density ramps need ensemble nvt (NPT sets the density itself)")
        if self.interval > self.n_steps:
            raise ValueError("interval must not exceed n_steps")
        return self


class GeometryOptimisation(Section):
    """Optimise the last frame(s) of the iteration's trajectory so far; every step is a candidate."""

    kind: Literal["geometry_optimisation"] = "geometry_optimisation"
    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    fmax: Force = Field(default=0.5, gt=0)
    max_steps: int = Field(default=200, ge=1)
    n_structures: int = Field(default=1, ge=1)


class ConformerSampler(Section):
    """RDKit conformers of every ion, packed with PACKMOL into boxes at a reduced density."""

    kind: Literal["conformers"] = "conformers"
    n_conformers: int = Field(default=200, ge=1, description="per ion species")
    n_boxes: int = Field(default=20, ge=1)
    density: Density = Field(default=0.9, gt=0)
    tolerance: Length = Field(default=2.0, gt=0)


class VolumeScan(Section):
    """Rigid-molecule volume scans: the box scaled with molecules kept rigid (centres of mass scaled)."""

    kind: Literal["volume_scan"] = "volume_scan"
    n_structures: int = Field(default=5, ge=1, description="geometry-optimised starting structures")
    fmax: Force = Field(default=0.5, gt=0)
    start: float = Field(default=0.9, gt=0, description="box length factor")
    end: float = Field(default=2.0, gt=0)
    n_steps: int = Field(default=100, ge=2)


class InitialPool(Section):
    """The labelled initial configurations the first model was not given (``initial_split``
    with ``n_train`` set): BAL from this pool is the paper's ML0. Their labels are reused."""

    kind: Literal["initial_pool"] = "initial_pool"


Sampler = Annotated[
    Union[MDSampler, GeometryOptimisation, ConformerSampler, VolumeScan, InitialPool], Field(discriminator="kind")
]
SAMPLER_KINDS = ("md", "geometry_optimisation", "conformers", "volume_scan", "initial_pool")


class Selection(Section):
    """One rule picking configurations to label from the candidates of some samplers. An
    iteration's rules are applied in order; a frame picked by one rule is not offered to the next."""

    kind: Literal["bal", "random", "all"] = Field(
        default="bal", description="bal: last-layer-gradient features + MaxDist (apax.bal)"
    )
    n: int = Field(default=50, ge=1)
    samplers: list[str] | None = Field(default=None, min_length=1, description="pick from these; null: all")
    split: Literal["auto", "train", "valid"] = Field(
        default="auto", description="auto: the dataset's seeded split; train/valid: force it"
    )
    max_pool: int | None = Field(default=None, ge=1, description="larger pools are picked at random")


class Iteration(Section):
    """One learning-on-the-fly iteration: sample with the last model, select, label, retrain.

    Fields not written are inherited from the previous iteration (``inherit: false`` to start
    afresh); samplers are named, so one sampler's field can be overridden alone; a sampler set
    to null is dropped. ``repeat`` runs the same iteration several times in a row.
    """

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    inherit: bool = True
    repeat: int = Field(default=1, ge=1)
    samplers: dict[str, Sampler] = Field(min_length=1)
    selection: list[Selection] = Field(
        default_factory=lambda: [Selection()], min_length=1, description="one rule, or a list applied in order"
    )
    energy_outlier_sigma: float | None = Field(
        default=None, gt=0, description="drop new labels whose energy per atom is further than this many sigma"
    )
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the model section")

    @field_validator("samplers", mode="before")
    @classmethod
    def _kind_from_name(cls, value: Any) -> Any:
        """A sampler named after its kind (``md:``) needs no ``kind:`` line."""
        if not isinstance(value, dict):
            return value
        return {
            name: dict(item, kind=name) if isinstance(item, dict) and "kind" not in item and name in SAMPLER_KINDS
            else item
            for name, item in value.items()
        }

    @field_validator("selection", mode="before")
    @classmethod
    def _one_rule(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check_rules(self) -> Iteration:
        for index, rule in enumerate(self.selection):
            unknown = sorted(set(rule.samplers or []) - set(self.samplers))
            if unknown:
                raise ValueError(
                    f"selection[{index}].samplers names {unknown}, which this iteration does not have "
                    f"(its samplers: {sorted(self.samplers)})"
                )
        return self


def inherit_iterations(items: Any) -> Any:
    """Merge each raw iteration onto the previous one, unless it says ``inherit: false``."""
    if not isinstance(items, list):
        return items
    merged: list[Any] = []
    for item in items:
        if isinstance(item, dict) and merged and isinstance(merged[-1], dict) and item.get("inherit", True):
            base = {k: v for k, v in merged[-1].items() if k not in ("name", "repeat")}
            item = deep_merge(base, item)
            item["samplers"] = {k: v for k, v in item.get("samplers", {}).items() if v is not None}
        merged.append(item)
    return merged


class FinalModel(Section):
    """A model trained on the whole final dataset, optionally relabelled first: ``relabel`` is a
    partial reference section applied to every frame (e.g. ``{d3: null}``: DFT without D3), and
    ``d3`` adds (``add``) or removes (``remove``) torch-dftd D3 from the labels, with the ``d3``
    section's settings and an optional ``d3_cutoff`` (used for both cutoffs)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    relabel: dict[str, Any] | None = None
    d3: Literal["keep", "add", "remove"] = "keep"
    d3_cutoff: Length | None = Field(default=None, gt=0)
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the model section")


# --------------------------------------------------------------------------- checkpoints


class Checkpoints(Section):
    """How often long steps save their state, so a killed run loses at most this much work.
    Not part of any step key: changing it never reruns a finished step."""

    md_steps: int = Field(default=1000, ge=1, description="MD steps between checkpoints (every engine)")
    optimisation_steps: int = Field(default=100, ge=1, description="optimiser steps between checkpoints")
    training_epochs: int = Field(default=10, ge=1, description="training epochs between checkpoints")


# --------------------------------------------------------------------------- the whole spec


class CampaignSpec(Section):
    """A whole study. Later sections (sampling schedule, model, production, analyses) are siblings."""

    campaign: CampaignInfo
    system: System
    reference: Reference = Field(default_factory=XTB)
    initial_data: InitialData = Field(default_factory=InitialMD)
    initial_split: InitialSplit = Field(default_factory=InitialSplit)
    failures: Failures = Field(default_factory=Failures)
    model: ApaxModel = Field(default_factory=ApaxModel)
    d3: DispersionCorrection = Field(default_factory=DispersionCorrection)
    sampling: list[Iteration] = Field(default_factory=list, description="the LotF schedule, in order")
    final_models: list[FinalModel] = Field(default_factory=list, description="trained on the final dataset")
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)

    @field_validator("sampling", mode="before")
    @classmethod
    def _inherit(cls, value: Any) -> Any:
        return inherit_iterations(value)

    @model_validator(mode="after")
    def _fill_retries(self) -> CampaignSpec:
        if self.failures.retry_with is None:
            self.failures.retry_with = [dict(r) for r in DEFAULT_RETRIES[self.reference.kind]]
        base = self.reference.model_dump(mode="json")
        for index, override in enumerate(self.failures.retry_with):
            if "kind" in override:
                raise ValueError(f"failures.retry_with[{index}] must not change the reference kind")
            try:
                type(self.reference).model_validate(deep_merge(base, override))
            except ValueError as exc:
                raise ValueError(f"failures.retry_with[{index}] is not a valid {self.reference.kind} override: {brief(exc)}")
        return self

    @model_validator(mode="after")
    def _check_model_overrides(self) -> CampaignSpec:
        base = self.model.model_dump(mode="json")
        for index, it in enumerate(self.sampling):
            if it.model:
                try:
                    ApaxModel.model_validate(deep_merge(base, it.model))
                except ValueError as exc:
                    raise ValueError(f"sampling[{index}].model is not a valid override of the model section: {brief(exc)}")
        return self

    @model_validator(mode="after")
    def _check_initial_pool(self) -> CampaignSpec:
        for index, it in enumerate(self.sampling):
            if any(s.kind == "initial_pool" for s in it.samplers.values()) and self.initial_split.n_train is None:
                raise ValueError(
                    f"sampling[{index}] has an initial_pool sampler, but the first model is trained on every "
                    "initial frame, so the pool is empty: set initial_split.n_train (and n_valid) to keep a pool"
                )
        return self

    @model_validator(mode="after")
    def _check_final_models(self) -> CampaignSpec:
        names = [final.name for final in self.final_models]
        if len(set(names)) != len(names):
            raise ValueError(f"final_models names must be unique, got {names}")
        base, reference = self.model.model_dump(mode="json"), self.reference.model_dump(mode="json")
        for index, final in enumerate(self.final_models):
            try:
                ApaxModel.model_validate(deep_merge(base, final.model))
                if final.relabel is not None:
                    type(self.reference).model_validate(deep_merge(reference, final.relabel))
            except ValueError as exc:
                raise ValueError(f"final_models[{index}] ({final.name}): {brief(exc)}")
        return self

    def retry_references(self) -> list[XTB | CP2K]:
        """The reference method with each retry override applied, in order."""
        base = self.reference.model_dump(mode="json")
        return [type(self.reference).model_validate(deep_merge(base, o)) for o in self.failures.retry_with or []]
