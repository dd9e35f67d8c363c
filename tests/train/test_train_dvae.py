import json
import logging
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from repo_params import PARAMS, TIMING

from nwt.checkpoint import load_checkpoint
from nwt.data.shards import ShardWriter, clip_sample
from nwt.models.dvae_io import load_dvae
from nwt.params import ParamsError, TrainDVAEParams, with_changes
from nwt.train.dvae import train_dvae

EPISODES = ["ep_a", "ep_b", "ep_c"]  # ep_c only appears in the unseen split
COLOURS = [(200, 60, 40), (40, 90, 200), (60, 180, 80)]

TINY = dict(
    seed=0, steps=8, batch_size=2, lr=3e-3, warmup_steps=2, channels=8, max_mult=2, code_dim=16, num_codes=16,
    heads=2, episode_dim=8, disc_channels=4, restart_every=2, checkpoint_every=2, log_every=2, val_every=4,
    val_quick_frames=4, val_frame_stride=5, shuffle_buffer=16, eval_batch_size=8, cpu_bf16=False,
)


def _clip(episode: int, clip: int, n: int = 10) -> np.ndarray:
    frames = np.zeros((n, 256, 224, 3), np.uint8)
    frames[:] = COLOURS[episode]
    for t in range(n):  # a moving bright square: the "presenter"
        y, x = 60 + 5 * t + 10 * clip, 50 + 3 * t
        frames[t, y : y + 80, x : x + 70] = (240, 220, 180)
    return frames


def _write(writer: ShardWriter, episode: int, clip: int, split: str) -> None:
    frames = _clip(episode, clip)
    audio = np.zeros(len(frames) * 640, np.float32)
    meta = {"episode_id": EPISODES[episode], "episode_index": episode, "split": split}
    writer.write(clip_sample(f"{EPISODES[episode]}_{clip:05d}", frames, audio, 16000, meta))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    with ShardWriter(root, "train", max_count=3) as w:
        for ep in range(2):
            for c in range(3):
                _write(w, ep, c, "train")
    with ShardWriter(root, "val") as w:
        for ep in range(2):
            _write(w, ep, 3, "val")
    with ShardWriter(root, "unseen") as w:
        _write(w, 2, 0, "unseen")
    return root


def tiny(**changes) -> TrainDVAEParams:
    """params.yaml's train_dvae section at the TINY size, with `changes`."""
    return with_changes(PARAMS.train_dvae, **{**TINY, **changes})


def _run(shards, tmp, cfg=TINY, **kw):
    return train_dvae(tiny(**cfg), TIMING, shards, tmp / "ckpt", tmp / "report", EPISODES, ["ep_c"], **kw)


def test_train_resume_matches_straight_run(shards, tmp_path):
    straight = _run(shards, tmp_path / "straight")
    assert straight["train"]["steps"] == 8
    assert set(straight["val"]) >= {"psnr_db", "ssim", "sharpness_ratio", "perplexity", "codes_used_fraction"}
    assert "psnr_db" in straight["unseen"] and straight["bits_per_frame"] == 16 * 14 * 2 * 4
    assert (tmp_path / "straight/report/recon_grid.png").exists()
    assert (tmp_path / "straight/report/plots/metrics/train/l1.tsv").exists()

    first = _run(shards, tmp_path / "resumed", stop_after=4)
    assert first == {"interrupted_at": 4}
    assert load_checkpoint(tmp_path / "resumed/ckpt/last.pt")["step"] == 4
    assert not (tmp_path / "resumed/ckpt/dvae.pt").exists()
    resumed = _run(shards, tmp_path / "resumed")
    assert resumed["train"]["steps"] == 8

    a = load_checkpoint(tmp_path / "straight/ckpt/dvae.pt")
    b = load_checkpoint(tmp_path / "resumed/ckpt/dvae.pt")
    assert a["step"] == b["step"] == 8 and a["fingerprint"] == b["fingerprint"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=1e-6, msg=k)

    model, meta = load_dvae(tmp_path / "straight/ckpt/dvae.pt")  # weights_only=True, rebuilt from the file alone
    assert meta["episode_ids"] == EPISODES and meta["unseen_ids"] == ["ep_c"] and meta["timing"]["fps"] == 25
    assert model.dims.n_episodes == 3 and not model.training

    # a finished run called again resumes at its last step: nothing to train, same step count
    again = _run(shards, tmp_path / "straight")
    assert again["train"]["steps"] == 8


def test_fingerprint_mismatch_starts_fresh(shards, tmp_path, caplog):
    _run(shards, tmp_path, {**TINY, "steps": 4})
    with caplog.at_level(logging.INFO, logger="nwt"):
        out = _run(shards, tmp_path, {**TINY, "steps": 2, "lr": 1e-3})
    assert out["train"]["steps"] == 2
    assert any("fresh" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.INFO, logger="nwt"):
        caplog.clear()
        _run(shards, tmp_path, {**TINY, "steps": 2, "lr": 1e-3})
    assert any("resuming" in r.getMessage() for r in caplog.records)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, shards: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    cfg = {**TINY, "steps": 4, "checkpoint_every": 2, "adv_start_fraction": 0.5, "decoder_phase_fraction": 0.5}
    result = train_dvae(tiny(**cfg), TIMING, Path(shards), Path(out) / "ckpt", Path(out) / "report", EPISODES, ["ep_c"],
                        device="cpu")
    if rank == 0:
        (Path(out) / "result.json").write_text(json.dumps(result))
    assert not dist.is_initialized()  # the trainer closes the process group it opened


# WebDataset refuses to read in a process group unless the pipeline names a node splitter;
# nwt.data.shards splits clips by rank itself and must pass `nodesplitter=None` to wds.WebDataset.
def test_ddp_gloo_two_processes(shards, tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(shards), str(tmp_path)), nprocs=2, join=True)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["train"]["steps"] == 4 and result["train"]["world_size"] == 2
    assert load_checkpoint(tmp_path / "ckpt/dvae.pt")["step"] == 4


def test_random_crops_sit_on_the_code_grid():
    from nwt.train.dvae import random_crops

    frames = np.arange(4 * 256 * 224 * 3, dtype=np.int64).reshape(4, 256, 224, 3)
    rng = np.random.default_rng(0)
    crops = random_crops(frames, 128, 112, 16, rng)
    assert crops.shape == (4, 128, 112, 3)
    for frame, crop in zip(frames, crops):
        y, x = np.argwhere(frame[..., 0] == crop[0, 0, 0])[0]  # where the window starts
        assert y % 16 == 0 and x % 16 == 0
        np.testing.assert_array_equal(frame[y : y + 128, x : x + 112], crop)
    assert random_crops(frames, 128, 112, 32, rng).shape == (4, 128, 96, 3)  # rounded down to the 8×7 grid
    assert random_crops(frames, 0, 0, 16, rng) is frames  # 0: whole frames
    assert random_crops(frames, 512, 512, 16, rng) is frames


def test_decoder_phase_freezes_encoder_and_codebook_and_resumes_exactly(shards, tmp_path):
    """The last `decoder_phase_fraction` of the steps train the decoder alone on argmax codes:
    encoder and codebook weights leave the phase as they entered it, the decoder does not; an
    interruption inside the phase resumes to the same weights."""
    cfg = {**TINY, "decoder_phase_fraction": 0.5, "decoder_phase_adv_weight": 1.0, "ema_decay": 0.0}
    _run(shards, tmp_path / "a", cfg, stop_after=4)  # the phase starts at step 4 of 8
    entering = load_checkpoint(tmp_path / "a/ckpt/last.pt")["model"]
    straight = _run(shards, tmp_path / "a", cfg)
    assert straight["train"]["steps"] == 8
    leaving = load_checkpoint(tmp_path / "a/ckpt/last.pt")["model"]
    for k in entering:
        same = torch.equal(entering[k], leaving[k])
        if k.startswith(("encoder.", "memcodes.")) and k != "memcodes.code_usage":
            assert same, k
    assert any(not torch.equal(entering[k], leaving[k]) for k in entering if k.startswith("decoder."))

    _run(shards, tmp_path / "b", cfg, stop_after=6)  # interrupted inside the phase
    _run(shards, tmp_path / "b", cfg)
    a, b = load_checkpoint(tmp_path / "a/ckpt/dvae.pt"), load_checkpoint(tmp_path / "b/ckpt/dvae.pt")
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=1e-6, msg=k)


def test_lr_schedule_anneals_the_joint_phase_then_the_decoder_phase():
    from nwt.train.dvae import decoder_phase_start, disc_lr_at, lr_at

    cfg = with_changes(PARAMS.train_dvae, steps=100, decoder_phase_fraction=0.4, lr=1e-3, decoder_phase_lr=5e-4,
                       warmup_steps=5, min_lr_fraction=0.05, disc_lr=2e-4)
    assert decoder_phase_start(cfg) == 60
    assert lr_at(4, cfg) == pytest.approx(1e-3)  # end of warm-up
    assert lr_at(59, cfg) == pytest.approx(5e-5, rel=0.02)  # the joint phase ends annealed: frozen encoder settled
    assert lr_at(60, cfg) == pytest.approx(5e-4)  # the decoder phase restarts at its own peak ...
    assert lr_at(99, cfg) == pytest.approx(2.5e-5, rel=0.05)  # ... and anneals too
    assert disc_lr_at(30, cfg) == pytest.approx(2e-4 * lr_at(30, cfg) / 1e-3)
    assert disc_lr_at(60, cfg) == disc_lr_at(99, cfg) == 2e-4  # constant critic in the decoder phase
    off = with_changes(cfg, decoder_phase_fraction=0.0)
    assert decoder_phase_start(off) == 100 and lr_at(99, off) == pytest.approx(5e-5, rel=0.02)
    for bad in (1.0, -0.1):  # all steps in the decoder phase would train a decoder on random codes
        with pytest.raises(ParamsError, match="decoder_phase_fraction must be in"):
            with_changes(cfg, decoder_phase_fraction=bad)


def test_cpu_bf16_autocast_trains_and_resumes_exactly(shards, tmp_path):
    """`cpu_bf16` runs the CPU training steps under bf16 autocast (convolutions in bf16, the loss
    in fp32): the weights differ from an fp32 run's, and an interrupted run still resumes to
    the same weights as a straight one."""
    from nwt.precision import autocast

    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast("cpu", cpu_bf16=True):
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    with autocast("cpu"):
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.float32

    cfg = {**TINY, "cpu_bf16": True}
    bf16 = _run(shards, tmp_path / "bf16", cfg)
    assert bf16["train"]["steps"] == 8 and np.isfinite(bf16["val"]["psnr_db"])
    _run(shards, tmp_path / "fp32", {**TINY, "cpu_bf16": False})
    a, b = load_checkpoint(tmp_path / "bf16/ckpt/dvae.pt"), load_checkpoint(tmp_path / "fp32/ckpt/dvae.pt")
    assert a["fingerprint"] != b["fingerprint"]  # a checkpoint of the other precision is not resumed
    assert any(not torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    _run(shards, tmp_path / "resumed", cfg, stop_after=4)
    _run(shards, tmp_path / "resumed", cfg)
    c = load_checkpoint(tmp_path / "resumed/ckpt/dvae.pt")
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], c["state_dict"][k], rtol=0, atol=1e-6, msg=k)


def test_decoder_phase_ema_decay_sets_how_far_the_exported_decoder_lags(shards, tmp_path):
    """In the decoder phase the EMA uses `decoder_phase_ema_decay`: at 0 the exported weights are
    the trained decoder's own; at the joint phase's 0.99 they lag behind it."""
    cfg = {**TINY, "decoder_phase_fraction": 0.5, "ema_decay": 0.99}

    def decoder_gap(tag: str, decay: float) -> float:
        _run(shards, tmp_path / tag, {**cfg, "decoder_phase_ema_decay": decay})
        last = load_checkpoint(tmp_path / tag / "ckpt/last.pt")
        keys = [k for k in last["model"] if k.startswith("decoder.") and last["model"][k].is_floating_point()]
        assert keys
        return max((last["ema"][k] - last["model"][k]).abs().max().item() for k in keys)

    assert decoder_gap("follow", 0.0) == 0.0
    assert decoder_gap("lag", 0.99) > 1e-4


@pytest.mark.parametrize("key,bad", [("ema_decay", 1.0), ("decoder_phase_ema_decay", -0.1),
                                     ("decoder_phase_ema_decay", 1.5)])
def test_ema_decay_outside_unit_interval_is_refused(shards, tmp_path, key, bad):
    with pytest.raises(ParamsError, match=f"train_dvae.{key} must be in"):
        tiny(**{key: bad})


def test_learning_figures_and_warnings(shards, tmp_path):
    out = _run(shards, tmp_path)
    val = out["val"]
    # the still-picture baseline: each val clip's own mean frame (a moving square on a flat colour)
    assert 5 < val["mean_frame_psnr_db"] < 40 and isinstance(out["train"]["psnr_db"], float)
    assert out["train"]["psnr_frames"] == 12  # every 5th of 6 × 10 train frames
    assert isinstance(out["warnings"], list) and all(isinstance(w, str) for w in out["warnings"])
    assert any("still picture" in w for w in out["warnings"])  # 8 steps learn less than the mean frame


def test_train_only_corpus_writes_every_output_with_nulls_and_reasons(tmp_path):
    """One episode with too few clips for val/test and no second episode for unseen (issue 20)."""
    root = tmp_path / "shards"
    with ShardWriter(root, "train") as w:
        for c in range(3):
            _write(w, 0, c, "train")
    out = train_dvae(tiny(), TIMING, root, tmp_path / "ckpt", tmp_path / "report", EPISODES[:1], [])
    assert out["val"]["psnr_db"] is None and "no val clips" in out["val"]["reason"]
    assert out["unseen"]["psnr_db"] is None and "no unseen episode" in out["unseen"]["reason"]
    for png in ("recon_grid.png", "recon_grid_unseen.png"):  # declared DVC outputs: labelled placeholders
        img = cv2.imread(str(tmp_path / "report" / png))
        assert img is not None and img.shape == (256, 448, 3) and img.std() > 0
    assert out["train"]["psnr_db"] is not None
    assert out["warnings"] == ["dVAE: no val PSNR (no val clips), so whether it learned was not checked"]
    assert json.loads(json.dumps(out, allow_nan=False))  # strict JSON: no NaN anywhere


def test_no_train_shards_says_what_is_needed(tmp_path):
    with pytest.raises(FileNotFoundError, match="at least one train clip"):
        train_dvae(tiny(), TIMING, tmp_path, tmp_path / "ckpt", tmp_path / "report", EPISODES, [])
