"""How well the sync expert (the judge of LSE-D / LSE-C) tells in-sync audio from shifted audio,
on any clips: the figures `train_sync` reports per split (`val.accuracy`, …), computed by the
same code here, so that `evaluate` can ask the same question of other clips (e.g. unseen voices:
`voices.judge_unseen_accuracy`).

All figures are on windows of 5 frames, distances as LSE uses them:
- `accuracy`: balanced binary accuracy at telling the in-sync audio window from one shifted by a
  random k with min_offset ≤ |k| ≤ max_offset frames (same clip), one pair of each per window;
  the distance threshold is chosen on the train clips (`train_threshold`, saved in sync.pt).
- `offset_recovery_rate`: each clip's audio advanced by k frames, k in ±1 … ±shift_range: the
  share of (clip, k) whose syncnet AV offset (nwt.eval.lipsync) is within ±recover_tolerance of k.
- `accuracy_speech`: the same as `accuracy` on the pairs whose anchor window holds speech (loudest
  frame within SPEECH_RANGE_DB of the clip's loudest); `speech_share` says how many pairs that is.
- `lse_d`, `lse_c`: mean over the (unshifted) clips.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from nwt.constants import Timing
from nwt.data.shards import Clip
from nwt.eval.lipsync import VSHIFT, embed_windows, lse_from_embeddings, shifted_lse
from nwt.eval.metrics import frame_loudness
from nwt.models.audio_features import log_mel
from nwt.models.sync_expert import SyncDims, SyncExpert, mouth_crops
from nwt.params import TrainSyncParams

log = logging.getLogger(__name__)

SPEECH_RANGE_DB = 30.0  # a window "has speech" if its loudest frame is within this of the clip's loudest


@dataclass
class SyncClip:
    key: str
    mouth: torch.Tensor  # (T, height + 2·margin, width + 2·margin) uint8 grey
    mel: torch.Tensor  # (4T, n_mels) float32
    loudness: np.ndarray  # (T,) log10 RMS per video frame (speech activity for the metrics)

    @property
    def windows(self) -> int:
        return int(self.mouth.shape[0]) - 4  # 5-frame windows (clips shorter than window + 1 are skipped)


def sync_clips(clips: Iterable[Clip], dims: SyncDims, timing: Timing, margin: int = 0) -> list[SyncClip]:
    """Shard clips → the judge's view of them (mouth crops with `margin` px around, log-mel,
    loudness); clips too short for one window are skipped with a warning."""
    out = []
    for clip in clips:
        t = min(len(clip.frames), len(clip.audio) // timing.samples_per_frame)
        if t < dims.window + 1:
            log.warning("clip %s has %d frames: too short for a sync window, skipped", clip.key, t)
            continue
        mel = log_mel(clip.audio[: t * timing.samples_per_frame], timing)
        loud = frame_loudness(clip.audio, timing.samples_per_frame, t)
        out.append(SyncClip(clip.key, torch.from_numpy(mouth_crops(clip.frames[:t], dims, margin)), mel, loud))
    return out


@torch.no_grad()
def clip_window_embeddings(model: SyncExpert, clip: SyncClip, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every full window's video and audio embeddings, (W, D) each."""
    d = model.dims
    v = embed_windows(model.forward_video, clip.mouth, clip.windows, d.window, 1, batch_size)
    a = embed_windows(model.forward_audio, clip.mel, clip.windows, d.window * d.mels_per_frame, d.mels_per_frame,
                      batch_size)
    return v, a


def speech_windows(loudness: np.ndarray, n: int, window: int = 5) -> np.ndarray:
    """(n,) bool: window t's loudest frame is within SPEECH_RANGE_DB of the clip's loudest frame."""
    peak = np.array([loudness[t : t + window].max() for t in range(n)])
    return peak >= loudness.max() - SPEECH_RANGE_DB / 20.0


def pair_distances(v: torch.Tensor, a: torch.Tensor, rng: np.random.Generator, min_offset: int, max_offset: int):
    """In-sync and off-sync (min_offset ≤ |k| ≤ max_offset, same clip) distances, one each per window
    that has an off-sync partner inside the clip → (pos (N,), neg (N,), window index (N,))."""
    n = v.shape[0]
    pos, neg, idx = [], [], []
    mags = np.arange(min_offset, max_offset + 1)
    for t in range(n):
        cands = [t + s * m for m in mags for s in (-1, 1) if 0 <= t + s * m < n]
        if not cands:
            continue
        u = cands[int(rng.integers(0, len(cands)))]
        pos.append(float((v[t] - a[t]).norm()))
        neg.append(float((v[t] - a[u]).norm()))
        idx.append(t)
    return np.array(pos), np.array(neg), np.array(idx, np.int64)


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The distance threshold (in-sync below it) with the best balanced accuracy."""
    cands = np.unique(np.concatenate([pos, neg]))
    if len(cands) == 0:
        return 1.0
    mids = np.concatenate([[cands[0] - 1e-6], (cands[:-1] + cands[1:]) / 2, [cands[-1] + 1e-6]])
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    acc = 0.5 * (np.searchsorted(pos_s, mids) / max(1, len(pos)) + 1 - np.searchsorted(neg_s, mids) / max(1, len(neg)))
    return float(mids[int(np.argmax(acc))])


def balanced_accuracy(pos: np.ndarray, neg: np.ndarray, threshold: float) -> float:
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(0.5 * ((pos < threshold).mean() + (neg >= threshold).mean()))


@torch.no_grad()
def evaluate_split(model: SyncExpert, clips: list[SyncClip], threshold: float, p: TrainSyncParams, seed: int) -> dict:
    """Every figure of the module docstring on `clips` (the model in eval mode)."""
    rng = np.random.default_rng([seed, 12345])
    pos_all, neg_all, speech_all, rec, exact, lse_d, lse_c, offs = [], [], [], [], [], [], [], []
    shifts = [k for k in range(-p.shift_range, p.shift_range + 1) if k != 0]
    tol = p.recover_tolerance
    for clip in clips:
        v, a = clip_window_embeddings(model, clip, p.eval_batch_size)
        pos, neg, idx = pair_distances(v, a, rng, p.min_offset, p.max_offset)
        pos_all.append(pos)
        neg_all.append(neg)
        speech_all.append(speech_windows(clip.loudness, v.shape[0])[idx])
        base = lse_from_embeddings(v[:-1], a[:-1], VSHIFT)  # windows 0 … T − 6, as syncnet_python
        lse_d.append(base["lse_d"])
        lse_c.append(base["lse_c"])
        offs.append(base["av_offset_frames"])
        for k in shifts:
            if v.shape[0] - abs(k) - 1 < 1:
                continue
            got = shifted_lse(v, a, k, VSHIFT)["av_offset_frames"]
            rec.append(abs(got - k) <= tol)
            exact.append(got == k)
    pos, neg = np.concatenate(pos_all or [np.zeros(0)]), np.concatenate(neg_all or [np.zeros(0)])
    speech = np.concatenate(speech_all or [np.zeros(0, bool)])
    nan = float("nan")
    return dict(
        accuracy=balanced_accuracy(pos, neg, threshold),
        accuracy_speech=balanced_accuracy(pos[speech], neg[speech], threshold),
        speech_share=float(speech.mean()) if len(speech) else nan,
        offset_recovery_rate=float(np.mean(rec)) if rec else nan,
        offset_exact_rate=float(np.mean(exact)) if exact else nan,
        in_sync_offset_rate=float(np.mean(np.abs(offs) <= tol)) if offs else nan,
        lse_d=float(np.mean(lse_d)) if lse_d else nan,
        lse_c=float(np.mean(lse_c)) if lse_c else nan,
        clips=len(clips),
        pairs=int(len(pos)),
        shift_trials=len(rec),
    )


@torch.no_grad()
def train_threshold(model: SyncExpert, clips: list[SyncClip], p: TrainSyncParams, seed: int) -> tuple[float, float]:
    """(the distance threshold with the best balanced accuracy on `clips`, that accuracy)."""
    rng = np.random.default_rng([seed, 54321])
    pos_all, neg_all = [], []
    for clip in clips:
        v, a = clip_window_embeddings(model, clip, p.eval_batch_size)
        pos, neg, _ = pair_distances(v, a, rng, p.min_offset, p.max_offset)
        pos_all.append(pos)
        neg_all.append(neg)
    pos, neg = np.concatenate(pos_all), np.concatenate(neg_all)
    thr = best_threshold(pos, neg)
    return thr, balanced_accuracy(pos, neg, thr)


def judge_figures(model: SyncExpert, clips: Iterable[Clip], params: TrainSyncParams, timing: Timing, seed: int,
                  threshold: float) -> dict:
    """Every figure `train_sync` reports for a split, on any shard clips (e.g. unseen voices).
    `threshold`: the judge's distance threshold (`saved_threshold` of its sync.pt); `seed`:
    train_sync's (params.train_sync.seed) for the same pairs as its own figures."""
    model.eval()
    judged = sync_clips(clips, model.dims, timing)
    if not judged:
        raise ValueError("no clip long enough for a sync window: cannot judge")
    return evaluate_split(model, judged, threshold, params, seed)


def judge_accuracy(model: SyncExpert, clips: Iterable[Clip], params: TrainSyncParams, timing: Timing, seed: int,
                   threshold: float) -> float:
    """Exactly `train_sync`'s `{split}.accuracy`, on any clips (`judge_figures`)."""
    return judge_figures(model, clips, params, timing, seed, threshold)["accuracy"]


def saved_threshold(sync_path) -> float:
    """The distance threshold a sync.pt was saved with (chosen on its train clips by train_sync)."""
    saved = torch.load(sync_path, map_location="cpu", weights_only=True)
    if "threshold" not in saved:
        raise KeyError(f"{sync_path} holds no distance threshold (made before nwt.eval.judge): rerun train_sync")
    return float(saved["threshold"])


def threshold_on(model: SyncExpert, clips: Iterable[Clip], params: TrainSyncParams, timing: Timing,
                 seed: int) -> float:
    """The distance threshold train_sync chooses, recomputed on shard clips (its train split) for a
    sync.pt saved without one."""
    model.eval()
    return train_threshold(model, sync_clips(clips, model.dims, timing), params, seed)[0]
