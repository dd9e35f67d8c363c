"""The judge's figures on any clips (nwt.eval.judge) are train_sync's own, and train_sync's voice
augmentation changes the audio windows only."""
import numpy as np
import torch
from repo_params import PARAMS, TIMING
from test_train_sync import tiny, write_shards

from nwt.data.shards import iter_clips, shard_paths
from nwt.eval.judge import judge_accuracy, judge_figures, saved_threshold, threshold_on
from nwt.models.sync_expert import load_sync_expert
from nwt.params import with_changes
from nwt.train.sync import SyncClip, sample_batch, sync_dims, train_sync

torch.set_num_threads(1)


def test_judge_accuracy_is_train_syncs_val_accuracy(tmp_path):
    shards = write_shards(tmp_path / "shards", clips=dict(train=8, val=3), seed=3)
    p = tiny(steps=30, aug_mel_warp=0.2, aug_mel_eq=0.2, aug_mel_noise=1.0)
    metrics = train_sync(p, TIMING, shards, tmp_path / "ckpt", tmp_path / "report", faces=PARAMS.faces)
    model, timing = load_sync_expert(tmp_path / "ckpt" / "sync.pt")
    threshold = saved_threshold(tmp_path / "ckpt" / "sync.pt")
    assert threshold == metrics["train"]["threshold"]
    val = list(iter_clips(shard_paths(shards, "val")))
    assert judge_accuracy(model, val, p, timing, p.seed, threshold) == metrics["val"]["accuracy"]
    figures = judge_figures(model, val, p, timing, p.seed, threshold)
    assert {k: figures[k] for k in ("lse_c", "offset_recovery_rate")} == {
        k: metrics["val"][k] for k in ("lse_c", "offset_recovery_rate")}
    # a sync.pt without a saved threshold: recomputed on the train clips, the same value
    assert threshold_on(model, iter_clips(shard_paths(shards, "train")), p, timing, p.seed) == threshold


def test_voice_augmentation_changes_audio_windows_only():
    dims = sync_dims(with_changes(PARAMS.train_sync, height=32, width=40), PARAMS.faces)
    gen = np.random.default_rng(1)
    t = 40
    clips = [SyncClip(f"c{i}", torch.from_numpy(gen.integers(0, 256, (t, 32, 40), dtype=np.uint8)),
                      torch.from_numpy(gen.uniform(-0.5, 1.0, (4 * t, dims.n_mels)).astype(np.float32)), np.zeros(t))
             for i in range(2)]
    base = dict(batch_size=16, aug_audio_gain=0.0, aug_freq_mask=0, aug_blur_sigma=0.0, aug_noise=0.0)

    def batch(**aug):
        p = with_changes(PARAMS.train_sync, **base, **aug)
        return sample_batch(clips, p, np.random.default_rng(0), dims, TIMING)

    v0, a0, c0, s0 = batch(aug_mel_warp=0.0, aug_mel_eq=0.0, aug_mel_noise=0.0)
    stored = torch.stack([clips[c].mel[4 * s : 4 * s + 20] for c, s in zip(c0.tolist(), s0.tolist())])
    assert torch.equal(a0, stored)  # off: the stored log-mel
    v1, a1, c1, s1 = batch(aug_mel_warp=0.25, aug_mel_eq=0.25, aug_mel_noise=1.0)
    assert torch.equal(c0, c1) and torch.equal(s0, s1) and torch.equal(v0, v1)  # same windows, same video
    assert (a1 - a0).abs().mean() > 0.02 and torch.isfinite(a1).all()
