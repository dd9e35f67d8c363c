"""train_sync on tiny synthetic shards whose 'mouth' darkens with the audio's loudness."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from conftest import syllable_envelope
from repo_params import PARAMS, TIMING

from nwt.data.shards import ShardWriter, clip_sample
from nwt.models.sync_expert import load_sync_expert
from nwt.params import TrainSyncParams, with_changes
from nwt.train.sync import SyncClip, blur_windows, sample_batch, sync_dims, train_sync

torch.set_num_threads(1)

SPF = 640
TINY_CFG = dict(
    seed=0, steps=60, batch_size=32, anchors_per_clip=8, lr=3e-3, warmup_steps=5, channels=8, audio_channels=16,
    embed_dim=16, height=24, width=28, min_offset=5, checkpoint_every=20, log_every=10, shift_range=6,
    aug_shift_px=1, aug_brightness=0.05, aug_contrast=0.1, aug_audio_gain=0.1, aug_freq_mask=8,
)


def synth_clip(rng: np.random.Generator, frames: int):
    """Syllable-like loudness (random bursts and pauses), noise audio with that envelope, and a
    dark mouth box in the 256×224 crop whose height follows the same envelope."""
    env = syllable_envelope(rng, frames)
    audio = (rng.normal(0, 1, frames * SPF) * np.repeat(0.3 * env + 0.002, SPF)).astype(np.float32)
    video = np.full((frames, 256, 224, 3), (190, 150, 130), np.uint8)  # skin
    video += rng.integers(0, 6, video.shape, dtype=np.uint8)
    for i, e in enumerate(env):
        half = int(2 + 12 * e)
        video[i, 138 - half : 138 + half, 88:136] = (60, 10, 20)
    return video, audio


def write_shards(root, clips=None, frames=48, seed=0):
    clips = clips or dict(train=10, val=3)
    rng = np.random.default_rng(seed)
    for split, n in clips.items():
        with ShardWriter(root, split) as sink:
            for i in range(n):
                video, audio = synth_clip(rng, frames)
                meta = dict(episode_id="ep0", episode_index=0, split=split, fps=25)
                sink.write(clip_sample(f"ep0_{split}{i:05d}", video, audio, 16000, meta))
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"))


def tiny(**changes) -> TrainSyncParams:
    """params.yaml's train_sync section at the TINY_CFG size, with `changes`."""
    return with_changes(PARAMS.train_sync, **{**TINY_CFG, **changes})


def run(shards, root, **kw):
    stop_after = kw.pop("stop_after", None)
    return train_sync(tiny(**kw), TIMING, shards, root / "ckpt", root / "report", faces=PARAMS.faces,
                      stop_after=stop_after)


@pytest.fixture(scope="module")
def full_run(shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return root, run(shards, root)


def test_learns_sync_well_above_chance(full_run):
    root, metrics = full_run
    assert metrics["train"]["steps"] == 60
    assert metrics["val"]["accuracy"] > 0.75, metrics  # chance: 0.5
    assert metrics["val"]["offset_recovery_rate"] > 0.6, metrics  # chance: ≈3 / 31
    assert metrics["val"]["shift_trials"] == 3 * 12
    assert np.isfinite(metrics["val"]["lse_d"]) and metrics["val"]["lse_c"] > 0
    assert metrics["warnings"] == [], metrics["warnings"]  # it learned: no warning
    assert metrics["test"]["accuracy"] is None and "no test clips" in metrics["test"]["reason"]


def test_exports_a_self_describing_checkpoint(full_run):
    root, _ = full_run
    ckpt = torch.load(root / "ckpt" / "sync.pt", weights_only=True)
    assert set(ckpt) == {"dims", "state_dict", "fingerprint", "step", "timing", "threshold"}
    assert ckpt["step"] == 60 and ckpt["timing"] == dict(fps=25, sample_rate=16000)
    model, timing = load_sync_expert(root / "ckpt" / "sync.pt")
    assert model.dims.height == 24 and timing.samples_per_frame == SPF
    assert torch.load(root / "ckpt" / "last.pt", weights_only=True)["step"] == 60
    assert (root / "report" / "metrics.json").exists()  # dvclive's summary
    assert json.loads((root / "report" / "metrics.json").read_text())["val"]["accuracy"] > 0.5


def test_interrupted_run_resumes_to_the_same_weights(shards, full_run, tmp_path, caplog):
    root, metrics = full_run
    out = run(shards, tmp_path, stop_after=20)
    assert out == {"train": {"steps": 20}} and not (tmp_path / "ckpt" / "sync.pt").exists()
    with caplog.at_level(logging.INFO, logger="nwt.train"):
        resumed = run(shards, tmp_path)
    assert "train_sync: resuming" in caplog.text
    a = torch.load(root / "ckpt" / "sync.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "ckpt" / "sync.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert resumed["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])


def test_other_params_start_fresh(shards, full_run, tmp_path, caplog):
    root, _ = full_run
    shutil.copytree(root / "ckpt", tmp_path / "ckpt")
    with caplog.at_level(logging.WARNING, logger="nwt.checkpoint"):
        out = run(shards, tmp_path, lr=1e-3, stop_after=1)
    assert out["train"]["steps"] == 1
    assert "starting fresh" in caplog.text


def test_no_train_shards(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        run(tmp_path, tmp_path / "out")


def test_blur_augmentation_blurs_each_window_by_its_own_sigma():
    rng = np.random.default_rng(0)
    video = torch.from_numpy(rng.uniform(0, 255, (3, 5, 32, 40)).astype(np.float32))
    out = blur_windows(video, np.array([0.0, 0.7, 1.5]))

    def lap_var(x):
        lap = x[..., 1:-1, 2:] + x[..., 1:-1, :-2] + x[..., 2:, 1:-1] + x[..., :-2, 1:-1] - 4 * x[..., 1:-1, 1:-1]
        return float(lap.var())

    assert out.shape == video.shape
    assert torch.allclose(out[0], video[0], atol=1e-3)  # σ 0 → untouched
    assert lap_var(out[2]) < lap_var(out[1]) < 0.5 * lap_var(video[1])
    assert abs(float(out[2].mean() - video[2].mean())) < 2.0  # a blur, not a darkening


def test_sample_batch_degrades_mouth_windows_only_when_asked():
    """aug_blur_sigma / aug_noise change the video windows of a batch (drawn from the same clips
    and positions); at 0 the windows are the stored crops."""
    dims = sync_dims(with_changes(PARAMS.train_sync, height=32, width=40), PARAMS.faces)
    gen = np.random.default_rng(1)
    t = 40
    clips = [SyncClip(f"c{i}", torch.from_numpy(gen.integers(0, 256, (t, 32, 40), dtype=np.uint8)),
                      torch.zeros(4 * t, dims.n_mels), np.zeros(t)) for i in range(2)]
    base = dict(batch_size=16, aug_audio_gain=0.0, aug_freq_mask=0)

    def video(**aug):
        p = with_changes(PARAMS.train_sync, **base, **aug)
        v, _, cid, start = sample_batch(clips, p, np.random.default_rng(0), dims, TIMING)
        stored = torch.stack([clips[c].mouth[s : s + 5] for c, s in zip(cid.tolist(), start.tolist())]).float()
        return v, stored

    clean, stored = video(aug_blur_sigma=0.0, aug_noise=0.0)
    assert torch.equal(clean, stored)
    blurred, stored = video(aug_blur_sigma=1.5, aug_noise=0.0)
    assert blurred.std() < stored.std()  # smoothing white noise lowers its spread
    noisy, stored = video(aug_blur_sigma=0.0, aug_noise=8.0)
    diff = noisy - stored
    assert 0 < diff.abs().mean() and diff.std() < 8.0 and noisy.min() >= 0 and noisy.max() <= 255


def test_no_val_test_or_unseen_gives_nulls_reasons_and_a_warning(tmp_path):
    """A train-only corpus (one short episode, issue 20): every split null + why, never NaN."""
    root = write_shards(tmp_path / "shards", dict(train=4))
    m = run(root, tmp_path, steps=2)
    for split in ("val", "test", "unseen"):
        assert m[split]["accuracy"] is None and f"no {split}" in m[split]["reason"]
    assert m["warnings"] == ["sync expert: no val figure (no val clips), so whether it learned was not checked"]
