"""3D structures of ions that can be trusted: RDKit embedding and force field where the force field
knows the ion, hypervalent centres placed on their ideal polyhedron where it does not (UFF squeezes
octahedral PF6- to F-F contacts of 0.9 A), then relaxation with xTB (tblite) in vacuum with the
ion's charge. The result is checked against the contact guard and the SMILES' bonds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ilcampaign.campaign.spec import Contacts, IonRelaxation
from ilcampaign.engine.structures.guards import template, worst_contact

if TYPE_CHECKING:
    from ase import Atoms

#: ideal directions of n ligands around a centre (VSEPR, no lone pairs)
_POLYHEDRA = {
    5: [(0, 0, 1), (0, 0, -1), (1, 0, 0), (-0.5, 0.75**0.5, 0), (-0.5, -(0.75**0.5), 0)],  # trigonal bipyramid
    6: [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)],  # octahedron
}


class IonError(ValueError):
    """An ion for which no sane 3D structure was found."""


def molecule(smiles: str, seed: int) -> tuple[Any, Any]:
    """The RDKit molecule of ``smiles`` with hydrogens, and seeded ETKDG embedding parameters."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    return Chem.AddHs(mol), params


def embedded(smiles: str, seed: int, n: int = 1) -> tuple[Any, list[int], str]:
    """RDKit molecule of ``smiles`` (hydrogens added) with ``n`` seeded ETKDG conformers, relaxed by MMFF
    where it has parameters (UFF where it has them and no atom is hypervalent; else ETKDG's own
    geometry with hypervalent centres idealised); the conformer ids and how they were made."""
    from rdkit.Chem import AllChem

    mol, params = molecule(smiles, seed)
    ids = list(AllChem.EmbedMultipleConfs(mol, n, params))
    if len(ids) < n:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, n, params))
    if len(ids) < n:
        raise IonError(f"RDKit embedded only {len(ids)} of {n} conformers of {smiles!r}")
    hypervalent = [atom.GetIdx() for atom in mol.GetAtoms() if atom.GetDegree() > 4]
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
        source = "rdkit-mmff"
    elif not hypervalent and AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=2000)
        source = "rdkit-uff"
    else:
        source = "rdkit-etkdg"
    if hypervalent:
        for conf_id in ids:
            conformer = mol.GetConformer(conf_id)
            positions = conformer.GetPositions()
            for centre in hypervalent:
                positions = _idealise(mol, positions, centre)
            for index, xyz in enumerate(positions):
                conformer.SetAtomPosition(index, xyz.tolist())
        source += "+ideal-polyhedra"
    return mol, ids, source


def _idealise(mol: Any, positions: np.ndarray, centre: int) -> np.ndarray:
    """Positions with the ligands of ``centre`` moved (each with what hangs on it) onto the ideal
    polyhedron at the sum of covalent radii, keeping their order around the centre."""
    from ase.data import covalent_radii

    neighbours = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors()]
    directions = _POLYHEDRA.get(len(neighbours))
    if directions is None:
        raise IonError(f"no ideal polyhedron for an atom with {len(neighbours)} neighbours")
    positions = positions.copy()
    origin = positions[centre]
    for ligand, direction in zip(neighbours, np.asarray(directions, dtype=float)):
        radius = covalent_radii[mol.GetAtomWithIdx(centre).GetAtomicNum()] + covalent_radii[
            mol.GetAtomWithIdx(ligand).GetAtomicNum()]
        branch = _branch(mol, ligand, centre)
        positions[branch] += origin + radius * direction - positions[ligand]
    return positions


def _branch(mol: Any, root: int, away_from: int) -> list[int]:
    """Atoms reached from ``root`` without passing ``away_from`` (the substituent on a bond)."""
    seen, todo = {root, away_from}, [root]
    while todo:
        atom = todo.pop()
        for n in mol.GetAtomWithIdx(atom).GetNeighbors():
            if n.GetIdx() not in seen:
                seen.add(n.GetIdx())
                todo.append(n.GetIdx())
    return sorted(seen - {away_from})


def relax(atoms: Atoms, settings: IonRelaxation) -> tuple[Atoms, dict[str, Any]]:
    """``atoms`` (an ion, ``info["charge"]`` set) relaxed in vacuum by xTB with BFGS; the relaxed ion
    and what the relaxation did. One OpenMP thread: the same ion, bit for bit, on every run."""
    from ase.optimize import BFGS
    from tblite.ase import TBLite
    from threadpoolctl import threadpool_limits

    relaxed = atoms.copy()
    relaxed.calc = TBLite(method=settings.method, charge=int(atoms.info.get("charge", 0)), verbosity=0)
    steps = 0
    with threadpool_limits(limits=1, user_api="openmp"):
        if len(relaxed) > 1:
            optimiser = BFGS(relaxed, logfile=None)
            optimiser.run(fmax=settings.fmax, steps=settings.max_steps)
            steps = optimiser.nsteps
        energy = float(relaxed.get_potential_energy())
        fmax = float(np.linalg.norm(relaxed.get_forces(), axis=1).max())
    relaxed.calc = None
    if fmax > settings.fmax:
        raise IonError(f"the {settings.method} relaxation did not converge in {settings.max_steps} steps "
                       f"(largest force {fmax:.3g} eV/A > fmax {settings.fmax:g})")
    return relaxed, {"method": settings.method, "steps": steps, "energy_eV": energy, "fmax_eV_A": fmax}


def conformer_atoms(mol: Any, conf_id: int, source: str) -> Atoms:
    """Conformer ``conf_id`` of the RDKit molecule as Atoms (info: formal charge, source)."""
    from ase import Atoms
    from rdkit import Chem

    atoms = Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer(conf_id).GetPositions())
    atoms.info.update(charge=Chem.GetFormalCharge(mol), source=source)
    return atoms


def ion_structure(smiles: str, seed: int, relaxation: IonRelaxation | None, contacts: Contacts | None
                  ) -> tuple[Atoms, dict[str, Any]]:
    """A sane 3D structure of the ion ``smiles`` (info: charge, source) and a record of how it was made;
    IonError, naming the pair, when the structure breaks the contact guard or the SMILES' bonds."""
    (atoms,), made = ion_conformers(smiles, 1, seed, relaxation, contacts)
    return atoms, made[0]


def ion_conformers(smiles: str, n: int, seed: int, relaxation: IonRelaxation | None, contacts: Contacts | None,
                   *, relax_all: bool = True) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """``n`` checked conformers of ``smiles`` and how each was made. Each is relaxed by xTB (with
    ``relax_all=False`` only where MMFF does not know the ion: its conformers would otherwise be
    UFF's or ETKDG's raw geometry)."""
    mol, ids, source = embedded(smiles, seed, n)
    structures, records = [], []
    for conf_id in ids:
        atoms, made = conformer_atoms(mol, conf_id, source), {"source": source}
        if relaxation is not None and (relax_all or source != "rdkit-mmff"):
            atoms, made["relaxation"] = relax(atoms, relaxation)
            made["source"] = atoms.info["source"] = f"{source}+{relaxation.method}"
        check(atoms, smiles, contacts, made["source"])
        structures.append(atoms)
        records.append(made)
    return structures, records


def check(atoms: Atoms, smiles: str, contacts: Contacts | None, source: str) -> None:
    """IonError when ``atoms`` (one ion of ``smiles``) breaks the contact guard."""
    if contacts is None:
        return
    bonds = np.array(template(smiles).bonds, dtype=int).reshape(-1, 2)
    worst = worst_contact(atoms, bonds, contacts)
    if worst is not None:
        raise IonError(f"the {source} structure of {smiles!r} is not sane: {worst}")


def conformer(smiles: str, seed: int) -> Atoms:
    """One force-field 3D conformer of ``smiles`` (``embedded``, no xTB relaxation);
    ``info["charge"]`` holds the formal charge."""
    mol, (conf_id,), source = embedded(smiles, seed)
    return conformer_atoms(mol, conf_id, source)
