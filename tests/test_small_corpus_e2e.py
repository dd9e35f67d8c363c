"""Issue 20: a one-episode corpus ("I have one video of myself") runs `dvc repro` to the end at the
tiny profile. No unseen split; the splits, the dVAE, the sync expert, the prior and evaluate's
episode control record null + a reason where the corpus lacks what a figure needs; each training
stage writes its `warnings` (a few training steps learn nothing, and say so)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from checkout_copy import copy_checkout, run

pytestmark = pytest.mark.slow
ONE_EPISODE = "download:\n  synthetic:\n    episodes: 1\n    seconds: 45\n"


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> str:
    return run(cmd, cwd, timeout, workers=1)


@pytest.fixture(scope="module")
def one_episode_repo(tmp_path_factory) -> Path:
    """A copy of this checkout at the tiny profile with one 45-s episode, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("one_episode")
    (root / "one_episode.yaml").write_text(ONE_EPISODE)
    work = copy_checkout(root / "repo", ["profiles/tiny.yaml", root / "one_episode.yaml"], "one episode")
    _run(["dvc", "repro"], work, timeout=1500)
    return work


def metrics(repo: Path, stage: str) -> dict:
    return json.loads((repo / "reports" / stage / "metrics.json").read_text())


def test_every_stage_finishes_and_every_output_exists(one_episode_repo):
    status = _run(["dvc", "status"], one_episode_repo)
    assert "changed" not in status and "deleted" not in status, status
    for png in ("recon_grid.png", "recon_grid_unseen.png"):
        assert (one_episode_repo / "reports" / "train_dvae" / png).stat().st_size > 0
    assert (one_episode_repo / "models" / "bundle" / "nwt.pt").exists()


def test_splits_adapt_with_reasons(one_episode_repo):
    shard = metrics(one_episode_repo, "shard")
    assert shard["clips_unseen"] == 0 and shard["clips_train"] > 0
    assert "at least one stays for training" in shard["split_notes"]["unseen"]
    dvae = metrics(one_episode_repo, "train_dvae")
    assert dvae["unseen"]["psnr_db"] is None and "no unseen episode" in dvae["unseen"]["reason"]
    sync = metrics(one_episode_repo, "train_sync")
    assert sync["unseen"]["accuracy"] is None and "no unseen episode" in sync["unseen"]["reason"]


def test_training_stages_write_warnings(one_episode_repo):
    for stage in ("train_dvae", "train_prior", "train_sync"):
        warnings = metrics(one_episode_repo, stage)["warnings"]
        assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings), stage
    # six dVAE steps reconstruct worse than a still picture of each clip
    assert any("still picture" in w for w in metrics(one_episode_repo, "train_dvae")["warnings"])


def test_episode_control_is_null_with_a_reason(one_episode_repo):
    control = metrics(one_episode_repo, "evaluate")["episode_control"]
    assert control["accuracy"] is None and "two trained episodes" in control["reason"]
    assert metrics(one_episode_repo, "export")["episodes"] == 1
