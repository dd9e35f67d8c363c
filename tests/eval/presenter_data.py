"""Small real data for the evaluation tests: 256×224 face crops drawn by the synthetic corpus's own
presenter renderer (head sprite, eyes, a mouth that opens with the audio's syllables), placed
as in the pipeline's crops, with noise audio whose envelope the mouth follows; and a
sync expert checkpoint in the pipeline's format (random weights: the tests check plumbing and
definitions, not a trained model's figures).

The fixtures are imported by the test modules that use them (`from presenter_data import …`):
a conftest.py here would be imported as a second top-level `conftest` module and shadow the
one in tests/ that other tests import `REPO` from."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import syllable_envelope

from nwt.checkpoint import save_checkpoint
from nwt.constants import Timing
from nwt.data.synthetic import presenter as pr
from nwt.geometry import sync_mouth_box
from nwt.models.sync_expert import SyncDims, SyncExpert
from nwt.params import EvaluateParams, build

SPF = 640  # 16 kHz / 25 fps
CROP_H, CROP_W = 256, 224
# where the faces stage's crops put the head: sprite centre row and sprite → crop scale, matched
# by overlaying a real test crop of the pipeline (face ellipse ≈ 0.56 of the crop height)
SPRITE_CENTRE_ROW = 106
SPRITE_SCALE = 0.6
# the sync expert's mouth box at params.yaml's framing
SYNC_ROWS, SYNC_COLS = sync_mouth_box(2.0, 0.19)
TINY_SYNC = dict(channels=4, audio_channels=8, embed_dim=16, height=24, width=28, dropout=0.0,
                 crop_rows=SYNC_ROWS, crop_cols=SYNC_COLS)
# an evaluate params section as params.yaml has it (no FID / FVD weights named)
EVALUATE = dict(samples=3, control_clips=2, syncnet_weights="", fid_weights="", fid_frame_stride=5, fvd_weights="",
                temperature=0.8, top_k=0, top_p=1.0, guidance=5.0, seed=0, codec_anchor_crf=41,
                seeds=3, real_speech_dir="", guidance_region="mouth")


def evaluate_params(**changes) -> EvaluateParams:
    """A typed evaluate section for tests, checked as load_params() checks params.yaml."""
    return build(EvaluateParams, {**EVALUATE, **changes}, "evaluate")


def presenter_clip(rng: np.random.Generator, frames: int, identity: int = 0, wall=(120, 110, 100),
                   shirt=(200, 120, 80)):
    """(frames, 256, 224, 3) uint8 RGB crops of the rendered presenter, and (frames × 640,) audio."""
    ident = pr.IDENTITIES[identity]
    sprite, alpha = pr.head_sprite(ident, "short", pr.HAIR_COLOURS[identity % len(pr.HAIR_COLOURS)])
    s = SPRITE_SCALE
    env = syllable_envelope(rng, frames)
    video = np.empty((frames, CROP_H, CROP_W, 3), np.uint8)
    for i, e in enumerate(env):
        jitter = rng.normal(0, 0.6, 2)  # small head motion
        m = np.array([[s, 0, CROP_W / 2 - s * pr.SPRITE_HX + jitter[0]],
                      [0, s, SPRITE_CENTRE_ROW - s * pr.SPRITE_HY + jitter[1]]], np.float32)
        head = sprite.copy()
        pr.draw_dynamic(head, ident, opening=float(e), width=0.5 + 0.3 * float(e), blink=0.0)
        frame = np.empty((CROP_H, CROP_W, 3), np.uint8)
        frame[:] = wall
        cv2.ellipse(frame, (CROP_W // 2, CROP_H + 40), (100, 100), 0, 180, 360, shirt, -1, cv2.LINE_AA)
        pr.composite(frame, head, alpha, m)
        video[i] = frame[..., ::-1]  # the renderer draws BGR
    audio = (rng.normal(0, 1, frames * SPF) * np.repeat(0.3 * env + 0.002, SPF)).astype(np.float32)
    return video, audio


@pytest.fixture(scope="session")
def presenter_clips():
    """Six 2-second clips (two identities), as test clips sorted by episode would come."""
    rng = np.random.default_rng(0)
    return [presenter_clip(rng, 50, identity=i // 3) for i in range(6)]


@pytest.fixture(scope="session")
def sync_path(tmp_path_factory, presenter_clips):
    """A sync expert checkpoint as train_sync writes it (dims + state_dict + timing). Random
    weights, but BatchNorm statistics measured on the clips, as training would set them: with
    the initial ones (mean 0, variance 1) every window embeds to nearly the same point."""
    torch.manual_seed(0)
    model = SyncExpert(SyncDims(**TINY_SYNC))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
    model.train()
    timing = Timing(25, 16000)
    with torch.no_grad():
        for frames, audio in presenter_clips:
            v, mel = model.frames_to_input(frames), model.audio_to_input(audio, timing)
            n = len(frames) - model.window + 1
            model.forward_video(torch.stack([v[i : i + model.window] for i in range(n)]))
            model.forward_audio(torch.stack([mel[4 * i : 4 * i + model.dims.audio_frames] for i in range(n)]))
    model.eval()
    path = tmp_path_factory.mktemp("sync") / "sync.pt"
    save_checkpoint(path, dict(dims=model.dims.to_dict(), state_dict=model.state_dict(), fingerprint="test",
                               step=0, timing=dict(fps=25, sample_rate=16000)))
    return path
