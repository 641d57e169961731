"""The campaign spec: pydantic models for every section of a spec YAML file, one module per
section. Variants (reference methods, samplers, analyses) are one module each in their family's
folder, registered by decorator (``registry``) and picked by ``kind:``. Quantities accept units
(``"800 Ry"``, ``"0.5 fs"``) and are stored in ASE units. This package imports nothing else of
ilcampaign but the unit helpers, so the engine and the CLI can both build on it."""

from ilcampaign.campaign.spec.analyses import Analysis
from ilcampaign.campaign.spec.analyses.common import (
    AnalysisSettings,
    ModelAnalysisSettings,
    RunAnalysisSettings,
    Site,
)
from ilcampaign.campaign.spec.analyses.density import DensitySettings
from ilcampaign.campaign.spec.analyses.diffusion import DiffusionSettings
from ilcampaign.campaign.spec.analyses.dihedrals import DihedralsSettings
from ilcampaign.campaign.spec.analyses.inference_cost import InferenceCostSettings
from ilcampaign.campaign.spec.analyses.model_errors import ModelErrorsSettings
from ilcampaign.campaign.spec.analyses.rdf import RDFSettings
from ilcampaign.campaign.spec.base import Problem, Section, added_option, brief, deep_merge, not_hashed, with_overrides
from ilcampaign.campaign.spec.campaign_info import Author, CampaignInfo
from ilcampaign.campaign.spec.campaign_spec import CampaignSpec, FinalStage, Stage
from ilcampaign.campaign.spec.checkpoints import Checkpoints
from ilcampaign.campaign.spec.d3 import DispersionCorrection
from ilcampaign.campaign.spec.execution import LocalExecution, ParslExecution
from ilcampaign.campaign.spec.failures import Failures
from ilcampaign.campaign.spec.final_models import FinalModel
from ilcampaign.campaign.spec.guards import BondGuard, Contacts, Guards, TemperatureGuard
from ilcampaign.campaign.spec.initial_data import GFNFF, Driver, InitialData, InitialFile, InitialMD, InitialRattle, InitialSplit
from ilcampaign.campaign.spec.model import ApaxModel, Ensemble, LearningRates, LossWeights
from ilcampaign.campaign.spec.production import BoxPreparation, Production, ProductionRun
from ilcampaign.campaign.spec.reference import Reference, dispersion
from ilcampaign.campaign.spec.reference.cp2k import CP2K, D3, SCF
from ilcampaign.campaign.spec.reference.xtb import XTB
from ilcampaign.campaign.spec.reference_data import ReferenceData
from ilcampaign.campaign.spec.registry import ANALYSES, REFERENCE_METHODS, SAMPLERS
from ilcampaign.campaign.spec.samplers import Sampler
from ilcampaign.campaign.spec.samplers.common import BoxRamp, Optimiser, SamplerSettings, Start, TemperatureRamp
from ilcampaign.campaign.spec.samplers.conformers import ConformersSettings
from ilcampaign.campaign.spec.samplers.geometry_optimisation import GeometryOptimisationSettings
from ilcampaign.campaign.spec.samplers.initial_pool import InitialPoolSettings
from ilcampaign.campaign.spec.samplers.md import MDSettings
from ilcampaign.campaign.spec.samplers.volume_scan import VolumeScanSettings
from ilcampaign.campaign.spec.sampling import Iteration, Planned, Relabel, Selection, expand
from ilcampaign.campaign.spec.system import Ion, IonRelaxation, System, formal_charge

__all__ = [
    "ANALYSES", "REFERENCE_METHODS", "SAMPLERS",
    "Analysis", "AnalysisSettings", "ApaxModel", "Author", "BondGuard", "BoxPreparation", "BoxRamp", "CP2K", "CampaignInfo",
    "CampaignSpec", "Checkpoints", "ConformersSettings", "Contacts", "D3", "DensitySettings", "DiffusionSettings",
    "DihedralsSettings", "DispersionCorrection", "Driver", "Ensemble", "Failures", "FinalModel", "FinalStage",
    "GFNFF", "GeometryOptimisationSettings", "Guards", "InferenceCostSettings", "InitialData", "InitialFile", "InitialMD",
    "InitialPoolSettings", "InitialRattle", "InitialSplit", "Ion", "IonRelaxation", "Iteration", "LearningRates",
    "LocalExecution", "LossWeights", "MDSettings", "ModelAnalysisSettings", "ModelErrorsSettings", "Optimiser",
    "ParslExecution", "Planned", "Problem", "Production", "ProductionRun", "RDFSettings", "Reference",
    "ReferenceData", "Relabel", "RunAnalysisSettings", "SCF", "Sampler", "SamplerSettings", "Section", "Selection",
    "Site", "Stage", "Start", "System", "TemperatureGuard", "TemperatureRamp", "VolumeScanSettings", "XTB",
    "added_option", "brief", "deep_merge", "dispersion", "expand", "formal_charge", "not_hashed", "with_overrides",
]
