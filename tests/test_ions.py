"""A panel of common ionic-liquid ions by SMILES: each gets a sane structure at its xTB minimum,
packs into a 2-pair box, and gives moderate xTB forces there. PF6- (octahedral) and the other ions RDKit's
force fields do not know are the point: UFF squeezes PF6- to F-F contacts of 0.9 A."""

from __future__ import annotations

import numpy as np
import pytest

from ilcampaign.campaign.spec import Contacts, IonRelaxation
from ilcampaign.engine.structures.guards import ContactCheck
from ilcampaign.engine.structures.ions import embedded

pytestmark = pytest.mark.slow

CATIONS = {"EMIM": "CCn1cc[n+](C)c1", "BMIM": "CCCCn1cc[n+](C)c1", "C4mpyr": "CCCC[N+]1(C)CCCC1",
           "N2222": "CC[N+](CC)(CC)CC"}
ANIONS = {"BF4": "F[B-](F)(F)F", "PF6": "F[P-](F)(F)(F)(F)F", "NTf2": "O=S(=O)([N-]S(=O)(=O)C(F)(F)F)C(F)(F)F",
          "OTf": "[O-]S(=O)(=O)C(F)(F)F", "DCA": "N#C[N-]C#N", "Cl": "[Cl-]", "acetate": "CC(=O)[O-]"}
PARTNER = {"cation": ANIONS["BF4"], "anion": CATIONS["EMIM"]}
PANEL = [(name, smiles, "cation") for name, smiles in CATIONS.items()] + \
        [(name, smiles, "anion") for name, smiles in ANIONS.items()]


@pytest.mark.parametrize("name, smiles, charge", PANEL, ids=[p[0] for p in PANEL])
def test_ion_is_sane_packs_and_has_moderate_forces(name, smiles, charge, tmp_path):
    """Through the molecules and pack steps: the stored ion, a 2-pair box at 1 g/cm^3, one xTB single point."""
    from tblite.ase import TBLite

    from ilcampaign.archive.frames import read_frames
    from ilcampaign.archive.store import Archive
    from ilcampaign.campaign.spec import Ion
    from ilcampaign.engine.graph import Node, resolve_keys
    from ilcampaign.engine.run.runner import run_graph
    from ilcampaign.engine.steps.molecules import MoleculesStep
    from ilcampaign.engine.steps.pack import PackStep

    pair = [Ion(name=name, smiles=smiles, count=2), Ion(name="partner", smiles=PARTNER[charge], count=2)]
    ions = pair if charge == "cation" else pair[::-1]
    relaxation, contacts = IonRelaxation(), Contacts()
    nodes = resolve_keys([
        Node("molecules", MoleculesStep(ions=ions, relaxation=relaxation, contacts=contacts, seed=0)),
        Node("pack", PackStep(ions=ions, density=0.6022, packing_density=0.6022, tolerance=2.0, seed=5, contacts=contacts),
             inputs={"molecules": "molecules"})])
    run_graph(nodes, tmp_path, workers=1, progress=lambda *a: None)
    archive = Archive(tmp_path / "archive")
    stored = read_frames(archive.output(nodes[0].key, "frames.h5"))[ions.index(pair[0])]
    made = archive.record(nodes[0].key)["summary"]["ions"][name]
    assert made["source"].endswith("+GFN2-xTB") and made["relaxation"]["fmax_eV_A"] <= relaxation.fmax
    stored.calc = TBLite(method="GFN2-xTB", charge=made["charge"], verbosity=0)
    assert np.linalg.norm(stored.get_forces(), axis=1).max() <= relaxation.fmax  # it is xTB's minimum
    assert ContactCheck(contacts, [smiles])(stored) is None

    box = read_frames(archive.output(nodes[1].key, "frames.h5"))[0]
    assert box.info["charge"] == 0 and ContactCheck(contacts, [ion.smiles for ion in ions])(box) is None
    box.calc = TBLite(method="GFN2-xTB", charge=0, verbosity=0)
    assert np.abs(box.get_forces()).max() < 50.0  # guards.max_force


def test_uff_would_have_crushed_pf6():
    """What RDKit's UFF alone makes of PF6- breaks the contact guard; the idealised start does not."""
    from rdkit.Chem import AllChem

    from ilcampaign.engine.structures.ions import conformer_atoms
    from ilcampaign.engine.structures.ions import molecule

    mol, params = molecule(ANIONS["PF6"], 1)
    AllChem.EmbedMolecule(mol, params)
    AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    check = ContactCheck(Contacts(), [ANIONS["PF6"]])
    assert "F" in str(check(conformer_atoms(mol, 0, "uff")))
    mol, (conf_id,), source = embedded(ANIONS["PF6"], 1)
    assert source == "rdkit-etkdg+ideal-polyhedra"
    assert check(conformer_atoms(mol, conf_id, source)) is None
