"""Checks the data of a finished work directory: in every dataset and label step, the bonds outside
the bond guard's bounds (each bond's length over its length in the relaxed ion, from the archive's
``molecules`` step) and the largest force component, per step and split.

    .venv/bin/python benchmarks/dataset_bonds.py campaigns/demo [--min 0.8] [--max 1.5] [--json FILE]

Exits 1 when a frame has a bond outside the bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ilcampaign.archive.frames import read_frames
from ilcampaign.archive.store import Archive
from ilcampaign.campaign.spec import BondGuard
from ilcampaign.engine.structures.guards import BondCheck, bond_lengths

KINDS = ("dataset", "label")


def check(archive: Archive, bounds: BondGuard) -> list[dict[str, Any]]:
    """Per finished dataset or label step and split: frames, frames with a bond outside ``bounds``,
    the smallest and largest bond ratio, and the largest force component (eV/A)."""
    molecules = archive.key_for_name("molecules")
    if molecules is None:
        raise SystemExit(f"{archive.root}: no finished molecules step")
    ions = read_frames(archive.output(molecules, "frames.h5"))
    bonds = BondCheck(bounds, [ion.info["smiles"] for ion in ions], ions)
    rows = []
    for key, entry in sorted(archive.index()["steps"].items(), key=lambda item: item[1]["finished"]):
        if entry["kind"] not in KINDS:
            continue
        frames = read_frames(archive.output(key, "frames.h5"))
        for split in sorted({frame.info.get("split", "") for frame in frames}):
            chosen = [frame for frame in frames if frame.info.get("split", "") == split]
            ratios = []
            for frame in chosen:
                topology = bonds.topology(frame)
                ratios.append(bond_lengths(frame, topology[0]) / topology[1] if topology else np.array([np.nan]))
            low = np.array([r.min() for r in ratios])
            high = np.array([r.max() for r in ratios])
            outside = (low < bounds.min) | (high > (bounds.max or np.inf))
            rows.append({"step": entry["name"], "split": split or "-", "frames": len(chosen),
                         "outside": int(outside.sum()), "min_ratio": float(np.nanmin(low)),
                         "max_ratio": float(np.nanmax(high)), "unread": int(np.isnan(low).sum()),
                         "max_force_eV_A": max(float(np.abs(f.get_forces()).max()) for f in chosen)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="a campaign's work directory (or its archive folder)")
    parser.add_argument("--min", type=float, default=BondGuard().min)
    parser.add_argument("--max", type=float, default=BondGuard().max)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    root = args.workdir / "archive" if (args.workdir / "archive").is_dir() else args.workdir
    rows = check(Archive(root), BondGuard(min=args.min, max=args.max))
    print("| step | split | frames | bond outside bounds | bond ratio min-max | frames without topology "
          "| largest force component (eV/A) |\n| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['step']} | {row['split']} | {row['frames']} | {row['outside']} | {row['min_ratio']:.3f}-"
              f"{row['max_ratio']:.3f} | {row['unread']} | {row['max_force_eV_A']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    sys.exit(1 if any(row["outside"] for row in rows) else 0)


if __name__ == "__main__":
    main()
