"""A real public assay as a user's file: RDKit's Contrib ships ChEMBL assay CHEMBL2321810 (the Free-Wilson
example: ``rdkit/Contrib/FreeWilson/data/CHEMBL2321810.smi``, SMILES then the ChEMBL compound id, and
``CHEMBL2321810_act.csv``, ``Name,Act``: the pActivity of 1,017 compounds). This joins the two on the
compound id into one CSV, the file a user would make: ``smiles,chembl_id,Act,active`` where ``active``
is 1 if Act >= ``--threshold`` (7.0: IC50 <= 100 nM) and 0 otherwise.

    python bench/user_assay.py --out /tmp/pred/chembl2321810.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def contrib_folder() -> Path:
    """The FreeWilson data folder of the installed RDKit wheel."""
    import rdkit

    return Path(rdkit.__file__).parent / "Contrib" / "FreeWilson" / "data"


def join(folder: Path, threshold: float) -> list[tuple[str, str, float, int]]:
    """(SMILES, ChEMBL id, Act, Act >= threshold) of every compound with both a SMILES and an activity,
    in the order of the .smi file."""
    activity = {}
    with open(folder / "CHEMBL2321810_act.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            activity[row["Name"].strip()] = float(row["Act"])
    rows = []
    for line in (folder / "CHEMBL2321810.smi").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] in activity:
            act = activity[fields[1]]
            rows.append((fields[0], fields[1], act, int(act >= threshold)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the joined CSV")
    parser.add_argument("--threshold", type=float, default=7.0, help="active: Act >= this pActivity")
    args = parser.parse_args()
    rows = join(contrib_folder(), args.threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["smiles", "chembl_id", "Act", "active"])
        writer.writerows(rows)
    print(f"{len(rows)} compounds ({sum(r[3] for r in rows)} active at Act >= {args.threshold}) -> {args.out}")


if __name__ == "__main__":
    main()
