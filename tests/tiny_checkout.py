"""A folder laid out like an nwt checkout after `dvc repro`, at toy size, for the bundle, store and
batch tests: tiny randomly initialised dVAE and prior checkpoints in the trainers' format
(models/dvae/dvae.pt, models/prior/prior.pt; the dims of tests/test_generate.py), the repository's
params.yaml, and real WebDataset shards (nwt.data.shards) whose clips are solid colours, so that
each episode's reference frame can be told apart: ep0's train clips are grey 40 then 90, ep1 is
held out (`unseen`), its clip grey 200."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile
import torch
from conftest import REPO
from test_generate import DVAE_TINY, EPISODES, PRIOR_TINY, SR, speech

from nwt.data.shards import ShardWriter, clip_sample
from nwt.models.dvae import DVAE, DVAEDims
from nwt.models.prior import Prior, PriorDims

UNSEEN = ["ep1"]
GREY = {"ep0": 40, "ep1": 200}


def write_checkpoints(root: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    dvae = DVAE(DVAEDims(**DVAE_TINY))
    prior = Prior(PriorDims(**PRIOR_TINY))
    paths = root / "models/dvae/dvae.pt", root / "models/prior/prior.pt"
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(dims=dvae.dims.to_dict(), state_dict=dvae.state_dict(), episode_ids=EPISODES, unseen_ids=UNSEEN,
                    timing=dict(fps=25, sample_rate=SR), fingerprint="dvae-test", step=0), paths[0])
    torch.save(dict(dims=prior.dims.to_dict(), state_dict=prior.state_dict(), episode_ids=EPISODES,
                    timing=dict(fps=25, sample_rate=SR), fingerprint="prior-test", step=0), paths[1])
    return paths


def write_shards(shards: Path) -> None:
    clips = [("train", "ep0", 0, 40), ("train", "ep0", 1, 90), ("unseen", "ep1", 0, 200)]
    for split in ("train", "unseen"):
        with ShardWriter(shards, split) as writer:
            for s, episode, n, grey in clips:
                if s != split:
                    continue
                frames = np.full((3, 64, 56, 3), grey, np.uint8)
                meta = dict(episode_id=episode, episode_index=EPISODES.index(episode), split=split)
                writer.write(clip_sample(f"{episode}_{n:05d}", frames, speech(3 / 25), SR, meta))


def make_checkout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_checkpoints(root)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    write_shards(root / "data/shards")
    return root


def write_wav(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    soundfile.write(path, speech(seconds, seed), SR)
    return path


def export_bundle(checkout: Path, out: Path) -> Path:
    """`nwt export --out OUT` run in `checkout` (as a user would, from inside it)."""
    import os

    from nwt.cli import main

    here = Path.cwd()
    os.chdir(checkout)
    try:
        assert main(["export", "--out", str(out)]) == 0
    finally:
        os.chdir(here)
    return out
