"""The worker count is an environment setting that must not change results: the real
preprocessing stages with NWT_WORKERS=1 and =2 write identical tables and ledgers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, synthetic_config

from nwt.data.synthetic import render_episode

pytestmark = pytest.mark.slow
STAGES = ("download", "shots", "faces", "segment")
TABLES = ("download/episodes.parquet", "shots/shots.parquet", "faces/tracks.parquet", "segment/clips.parquet",
          "faces/ledger.parquet", "segment/ledger.parquet")


def _run(work: Path, sources: Path, workers: int) -> Path:
    run = work / f"w{workers}"
    shutil.copytree(REPO / "pipeline", run / "pipeline")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["download"].update(source="manifest", manifest="manifest.csv")
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    (run / "manifest.csv").write_text("episode_id,source\n" + "".join(
        f"{p.stem},{p}\n" for p in sorted(sources.glob("*.mp4"))))
    env = dict(os.environ, NWT_WORKERS=str(workers), RAY_AUTH_MODE="disabled")
    for stage in STAGES:
        proc = subprocess.run([sys.executable, f"pipeline/{stage}.py"], cwd=run, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{stage} with {workers} workers:\n{proc.stderr[-3000:]}"
    return run


def test_one_and_two_workers_give_identical_tables(tmp_path):
    sources = tmp_path / "src"
    for i in range(3):
        render_episode(f"ep{i}", 40 + i, 12.0, sources, synthetic_config())
    one, two = _run(tmp_path, sources, 1), _run(tmp_path, sources, 2)
    for table in TABLES:
        a, b = pd.read_parquet(one / "data" / table), pd.read_parquet(two / "data" / table)
        if "path" in a.columns:  # absolute paths differ between the two run folders
            a, b = a.drop(columns="path"), b.drop(columns="path")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)
    assert len(pd.read_parquet(one / "data/segment/clips.parquet")) > 0
