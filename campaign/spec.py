"""The campaign spec: pydantic models for every section of a spec YAML file.

Each section is a sibling field of :class:`CampaignSpec`; variants (reference method, initial
data source) are discriminated unions picked by ``kind:``. Quantities accept units
(``"800 Ry"``, ``"0.5 fs"``) and are stored in ASE units. This module imports nothing else of
ilcampaign but the unit helpers, so the engine and the CLI can both build on it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaign.units import Density, Length, PlaneWaveCutoff, Temperature, Time


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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (dicts merge, other values replace)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- the whole spec


class CampaignSpec(Section):
    """A whole study. Later sections (sampling schedule, model, production, analyses) are siblings."""

    campaign: CampaignInfo
    system: System
    reference: Reference = Field(default_factory=XTB)
    initial_data: InitialData = Field(default_factory=InitialMD)
    failures: Failures = Field(default_factory=Failures)

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
                raise ValueError(f"failures.retry_with[{index}] is not a valid {self.reference.kind} override: {exc}")
        return self

    def retry_references(self) -> list[XTB | CP2K]:
        """The reference method with each retry override applied, in order."""
        base = self.reference.model_dump(mode="json")
        return [type(self.reference).model_validate(deep_merge(base, o)) for o in self.failures.retry_with or []]
