"""Sync-offset curves: the mean sync distance as a function of the AV offset, per source.

LSE-D is the minimum of such a curve and LSE-C its median minus that minimum
(`nwt.eval.lipsync`); the curve itself shows what the two numbers summarise — a clear dip at 0
for video that follows the audio, a flat line for video that ignores it, a dip elsewhere for a
constant lag. The curve is made of the per-offset mean distances that `lse_scores` already
returns for every clip (`dists`, `offsets`), averaged over clips (each clip weighs the same, as
in the LSE figures), and written as one TSV per source for `dvc plots` (x = offset, y = distance).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nwt.atomic import atomic_path


def mean_offset_curve(results: Sequence[Mapping]) -> list[dict]:
    """`lse_scores` results of several clips → [{"offset", "distance"}] by ascending offset."""
    if not results:
        raise ValueError("no clips to average")
    offsets = np.asarray(results[0]["offsets"])
    for r in results:
        if not np.array_equal(r["offsets"], offsets):
            raise ValueError("clips were scored over different offset ranges")
    mean = np.mean([np.asarray(r["dists"], np.float64) for r in results], axis=0)
    order = np.argsort(offsets)
    return [dict(offset=int(offsets[i]), distance=round(float(mean[i]), 5)) for i in order]


def write_curve_tsv(path: str | Path, rows: Sequence[Mapping]) -> None:
    """Rows {"offset", "distance"} → a TSV with a header line (what `dvc plots` reads)."""
    lines = ["offset\tdistance"] + [f"{r['offset']}\t{r['distance']}" for r in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_curve_tsv(path: str | Path) -> list[dict]:
    header, *lines = Path(path).read_text().splitlines()
    if header.split("\t") != ["offset", "distance"]:
        raise ValueError(f"{path}: unexpected header {header!r}")
    return [dict(offset=int(o), distance=float(d)) for o, d in (line.split("\t") for line in lines)]
