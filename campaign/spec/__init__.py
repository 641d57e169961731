"""The campaign spec: pydantic models for every section of a spec YAML file, one module per
section. Variants (reference method, initial data source, samplers) are discriminated unions
picked by ``kind:``. Quantities accept units (``"800 Ry"``, ``"0.5 fs"``) and are stored in ASE
units. This package imports nothing else of ilcampaign but the unit helpers, so the engine and
the CLI can both build on it."""

from ilcampaign.campaign.spec.analyses import RDF, Analysis, DensityAnalysis, Diffusion, Dihedrals, InferenceCost, ModelErrors, Site
from ilcampaign.campaign.spec.base import Problem, Section, brief, deep_merge, not_hashed, with_overrides
from ilcampaign.campaign.spec.campaign_info import Author, CampaignInfo
from ilcampaign.campaign.spec.campaign_spec import CampaignSpec, FinalStage, Stage
from ilcampaign.campaign.spec.checkpoints import Checkpoints
from ilcampaign.campaign.spec.execution import LocalExecution, ParslExecution
from ilcampaign.campaign.spec.d3 import DispersionCorrection
from ilcampaign.campaign.spec.failures import DEFAULT_RETRIES, Failures
from ilcampaign.campaign.spec.final_models import FinalModel
from ilcampaign.campaign.spec.guards import Contacts, Guards, TemperatureGuard
from ilcampaign.campaign.spec.initial_data import InitialData, InitialFile, InitialMD, InitialRattle, InitialSplit
from ilcampaign.campaign.spec.model import ApaxModel, Ensemble, LearningRates, LossWeights
from ilcampaign.campaign.spec.production import BoxPreparation, Production, ProductionRun
from ilcampaign.campaign.spec.reference import CP2K, D3, SCF, XTB, Reference, dispersion
from ilcampaign.campaign.spec.references import ReferenceData
from ilcampaign.campaign.spec.sampling import (
    SAMPLER_KINDS,
    BoxRamp,
    ConformerSampler,
    GeometryOptimisation,
    InitialPool,
    Iteration,
    MDSampler,
    Optimiser,
    Planned,
    Relabel,
    Sampler,
    Selection,
    Start,
    TemperatureRamp,
    VolumeScan,
    expand,
)
from ilcampaign.campaign.spec.system import Ion, IonRelaxation, System, formal_charge

__all__ = [
    "RDF", "Analysis", "BoxPreparation", "DensityAnalysis", "Diffusion", "Dihedrals", "InferenceCost", "ModelErrors",
    "Production", "ProductionRun", "ReferenceData", "Site",
    "ApaxModel", "Author", "BoxRamp", "CP2K", "CampaignInfo", "CampaignSpec", "Checkpoints", "LocalExecution", "ParslExecution", "ConformerSampler", "Contacts",
    "D3", "DEFAULT_RETRIES", "DispersionCorrection", "Ensemble", "Failures", "FinalModel", "FinalStage",
    "GeometryOptimisation", "Guards", "InitialData", "InitialFile", "InitialMD", "InitialPool", "InitialRattle",
    "InitialSplit", "Ion", "IonRelaxation", "Iteration", "LearningRates", "LossWeights", "MDSampler", "Optimiser", "Planned",
    "Problem", "Reference", "Relabel", "SAMPLER_KINDS", "SCF", "Sampler", "Section", "Selection", "Stage", "Start",
    "TemperatureGuard",
    "System", "TemperatureRamp", "VolumeScan", "XTB", "brief", "deep_merge", "dispersion", "expand",
    "formal_charge", "not_hashed", "with_overrides",
]
