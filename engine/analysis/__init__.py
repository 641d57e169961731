"""Streaming analysis of production trajectories (H5MD files of ``archive.frames``): radial
distribution functions, mean squared displacements, dihedral distributions and the statistics that
turn them into numbers with honest uncertainties. numpy/scipy/h5py only; ASE units (Angstrom, fs).
"""

from engine.analysis.dihedrals import dihedral_angles, dihedral_distributions, dihedral_quads
from engine.analysis.msd import MSD
from engine.analysis.rdf import RDF
from engine.analysis.sites import Molecule, Sites, element_groups, molecules, of_species
from engine.analysis.trajectory import Trajectory

__all__ = ["MSD", "RDF", "Molecule", "Sites", "Trajectory", "dihedral_angles", "dihedral_distributions",
           "dihedral_quads", "element_groups", "molecules", "of_species"]
