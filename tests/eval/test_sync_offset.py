"""Sync-offset curves: the mean of the per-offset distances `lse_scores` returns, by offset, as
TSV files that `dvc plots show` renders from the dvc.yaml of this checkout."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from presenter_data import presenter_clips, sync_path  # noqa: F401 (fixtures)
from test_lipsync import FakeScorer, fake_clip

from nwt.constants import Timing
from nwt.eval.lipsync import load_scorer, lse_scores
from nwt.eval.sync_offset import mean_offset_curve, read_curve_tsv, write_curve_tsv

torch.set_num_threads(1)
TIMING = Timing(25, 16000)
SPF = TIMING.samples_per_frame
PLOT_DIR = Path("reports/evaluate/plots/sync_offset")


def test_curve_of_a_known_offset_dips_there():
    # audio advanced by 3 frames in every clip: the curve's minimum sits at offset +3
    results = [lse_scores(FakeScorer(3), *fake_clip(n), TIMING) for n in (30, 40, 50)]
    rows = mean_offset_curve(results)
    assert [r["offset"] for r in rows] == list(range(-15, 16))
    best = min(rows, key=lambda r: r["distance"])
    assert best["offset"] == 3 == results[0]["av_offset_frames"]
    want = np.mean([r["dists"][r["offsets"] == 3][0] for r in results])
    assert best["distance"] == pytest.approx(want, abs=1e-5)


def test_curve_of_presenter_clips_averages_the_lse_distances(presenter_clips, sync_path):
    scorer, timing = load_scorer(sync_path)
    results = [lse_scores(scorer, frames, audio, timing) for frames, audio in presenter_clips[:3]]
    rows = mean_offset_curve(results)
    by_offset = {r["offset"]: r["distance"] for r in rows}
    for o in (-15, -1, 0, 7):
        want = np.mean([r["dists"][list(r["offsets"]).index(o)] for r in results])
        assert by_offset[o] == pytest.approx(want, abs=1e-5)
    one = mean_offset_curve(results[:1])  # one clip: its LSE-D is the curve's minimum
    assert min(r["distance"] for r in one) == pytest.approx(results[0]["lse_d"], abs=1e-5)
    with pytest.raises(ValueError, match="no clips"):
        mean_offset_curve([])


def test_tsv_round_trip(tmp_path):
    rows = [dict(offset=o, distance=round(1.0 - 0.01 * abs(o), 5)) for o in range(-15, 16)]
    path = tmp_path / "plots" / "gt.tsv"
    write_curve_tsv(path, rows)
    assert path.read_text().splitlines()[0] == "offset\tdistance"
    assert read_curve_tsv(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["gt.tsv"]  # no temp file left behind


def encoded_fields(spec) -> dict[str, set]:
    """The fields a vega-lite spec puts on x and y, wherever its layers encode them."""
    found: dict[str, set] = {}

    def walk(node):
        if isinstance(node, dict):
            for axis in ("x", "y"):
                if isinstance(node.get("encoding", {}).get(axis), dict) and "field" in node["encoding"][axis]:
                    found.setdefault(axis, set()).add(node["encoding"][axis]["field"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return found


def test_dvc_plots_show_renders_the_curves(tmp_path):
    """The evaluate stage's plots as declared in this checkout's dvc.yaml: one chart per source
    (x = offset, y = distance) and the three sources in one chart."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    for source, depth in (("gt", 0.5), ("recon", 0.2), ("gen", 0.0)):
        write_curve_tsv(tmp_path / PLOT_DIR / f"{source}.tsv",
                        [dict(offset=o, distance=1.0 - depth * (o == 0)) for o in range(-15, 16)])
    dvc = str(Path(sys.executable).parent / "dvc")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True, env=env)
    out = subprocess.run([dvc, "plots", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    data = json.loads(out.stdout)["data"]  # other stages' plots are missing here: errors, not ours
    for source in ("gt", "recon", "gen"):
        (plot,) = data[str(PLOT_DIR / f"{source}.tsv")]
        assert encoded_fields(plot["content"]) == {"x": {"offset"}, "y": {"distance"}}
        assert len(plot["content"]["data"]["values"]) == 31
    (combined,) = data["sync_offset"]
    values = combined["content"]["data"]["values"]
    assert len(values) == 3 * 31
    assert {float(v["distance"]) for v in values if float(v["offset"]) == 0} == {0.5, 0.8, 1.0}
