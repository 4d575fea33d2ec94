"""How tests/data/user/conformers/tiny.sdf was made (kept for provenance; the tests read the committed file):
10 small molecules with chlorine and sulfur besides H, C, N, O, F, 3 RDKit ETKDG conformers each with explicit
hydrogens (seeded), then four records a user's file may hold that prepare must skip: a 2D record, one without
hydrogens, a charged one and a broken one.  Run: python tests/data/user/conformers/make_tiny.py"""

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

SMILES = ["CCO", "CCCl", "CSC", "CC(=O)N", "OCC(F)F", "CC#N", "ClCCO", "CCS", "NCC(=O)O", "C1CC1Cl"]


def main() -> None:
    out = Path(__file__).with_name("tiny.sdf")
    blocks = []
    for smiles in SMILES:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        ids = AllChem.EmbedMultipleConfs(mol, numConfs=3, randomSeed=7)
        AllChem.MMFFOptimizeMoleculeConfs(mol)
        for cid in ids:
            mol.SetProp("_Name", f"{smiles} conformer {cid}")
            blocks.append(Chem.MolToMolBlock(mol, confId=cid) + "$$$$\n")
    flat = Chem.MolFromSmiles("CCN")
    AllChem.Compute2DCoords(flat)
    flat = Chem.AddHs(flat, addCoords=True)
    flat.SetProp("_Name", "2D record")
    blocks.append(Chem.MolToMolBlock(flat) + "$$$$\n")
    heavy = Chem.AddHs(Chem.MolFromSmiles("CCCO"))
    AllChem.EmbedMolecule(heavy, randomSeed=7)
    heavy = Chem.RemoveHs(heavy)
    heavy.SetProp("_Name", "no hydrogens")
    blocks.append(Chem.MolToMolBlock(heavy) + "$$$$\n")
    charged = Chem.AddHs(Chem.MolFromSmiles("C[NH3+]"))
    AllChem.EmbedMolecule(charged, randomSeed=7)
    charged.SetProp("_Name", "charged")
    blocks.append(Chem.MolToMolBlock(charged) + "$$$$\n")
    blocks.append("broken record\n  no counts line here\n\nM  END\n$$$$\n")
    out.write_text("".join(blocks))


if __name__ == "__main__":
    main()
