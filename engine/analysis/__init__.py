"""Streaming analysis of production trajectories (H5MD files of ``ilcampaign.archive.frames``): radial
distribution functions, mean squared displacements, dihedral distributions and the statistics that
turn them into numbers with honest uncertainties. numpy/scipy/h5py only; ASE units (Angstrom, fs).
"""

from ilcampaign.engine.analysis.dihedrals import dihedral_angles, dihedral_distributions, dihedral_quads
from ilcampaign.engine.analysis.msd import MSD
from ilcampaign.engine.analysis.rdf import RDF
from ilcampaign.engine.analysis.sites import Molecule, Sites, element_groups, molecules, of_species
from ilcampaign.engine.analysis.trajectory import Trajectory

__all__ = ["MSD", "RDF", "Molecule", "Sites", "Trajectory", "dihedral_angles", "dihedral_distributions",
           "dihedral_quads", "element_groups", "molecules", "of_species"]
