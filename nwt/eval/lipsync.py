"""Lip-sync scores LSE-D and LSE-C, exactly as syncnet_python defines them.

The definition (Joon Son Chung's syncnet_python, `SyncNetInstance.evaluate` and `calc_pdist`;
the scores that Wav2Lip and later papers call LSE-D / LSE-C):

1. Clip length `min_length = min(video frames, audio samples // samples_per_frame)`. One
   embedding per 5-frame window starting at video frame i, for i in 0 … min_length − 6 (the
   original loops `range(0, min_length - 5)`, so the last full window is left out; kept here),
   and one per matching 20-frame audio window starting at feature frame 4i.
2. The audio embeddings are padded with `vshift` zero vectors at both ends (vshift = 15 frames);
   for video window i, the distances (`F.pairwise_distance`, which adds eps = 1e-6 to the
   difference) to padded audio windows i … i + 2·vshift, i.e. to audio windows i − vshift …
   i + vshift.
3. `mdist` = the mean of those distances over the clip's windows, one per offset.
   LSE-D = min(mdist); LSE-C = median(mdist) − min(mdist); AV offset = vshift − argmin(mdist).

Sign of the offset: if the audio is *advanced* by k frames (video frame i plays with the audio of
frame i + k), the AV offset is +k; audio delayed by k frames gives −k.

Scorers. Anything with `frames_to_input`, `audio_to_input`, `forward_video`, `forward_audio`,
`window` and `mels_per_frame` scores (see `SyncScorer`):
- our sync expert (`nwt.models.sync_expert.SyncExpert`, trained by the pipeline): L2-normalised
  embeddings, so distances lie in [0, 2] and zero-padded offsets sit at distance 1;
- the official network (`nwt.models.syncnet.OfficialSyncNet`): the published `S` architecture
  of syncnet_python's `SyncNetModel.py` with its original front ends, loaded from
  `syncnet_v2.model` (a state dict) when a path is given. Its embeddings are not normalised
  (published LSE-D values are around 6–8).

`load_scorer(path)` gives either from its file.
"""
from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nwt.constants import Timing
from nwt.models.sync_expert import load_sync_expert
from nwt.models.syncnet import OFFICIAL_TIMING, load_official_syncnet

VSHIFT = 15  # offsets searched: −15 … +15 video frames (syncnet_python's default vshift)
PDIST_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default eps (added to the difference)


class SyncScorer(Protocol):
    window: int  # video frames per window (5)
    mels_per_frame: int  # audio feature frames per video frame (4)

    def frames_to_input(self, frames: np.ndarray) -> torch.Tensor: ...  # (T, H, W, 3) RGB → (T, ...)
    def audio_to_input(self, audio: np.ndarray, timing: Timing) -> torch.Tensor: ...  # (S,) → (A, F)
    def forward_video(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, window, ...) → (N, D)
    def forward_audio(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, window × mels_per_frame, F) → (N, D)


# ---------------------------------------------------------------- the definition
def calc_pdist(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(N, D) video and (N, D) audio embeddings → (N, 2·vshift + 1) distances; column j is the
    distance from video window i to audio window i + j − vshift (zero vector outside the clip)."""
    if feat1.shape != feat2.shape:
        raise ValueError(f"video and audio embeddings differ in shape: {tuple(feat1.shape)} vs {tuple(feat2.shape)}")
    win = 2 * vshift + 1
    feat2p = F.pad(feat2, (0, 0, vshift, vshift))  # (N + 2·vshift, D)
    idx = torch.arange(feat1.shape[0])[:, None] + torch.arange(win)[None]  # (N, win)
    return (feat1[:, None, :] - feat2p[idx] + PDIST_EPS).norm(dim=-1)


def lse_from_embeddings(video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = VSHIFT) -> dict:
    """LSE-D, LSE-C and the AV offset from per-window embeddings (steps 2–3 above)."""
    dists = calc_pdist(video_emb.float(), audio_emb.float(), vshift)  # (N, win)
    mdist = dists.mean(0)  # (win,)
    minval, minidx = torch.min(mdist, 0)
    return dict(
        lse_d=float(minval),
        lse_c=float(torch.median(mdist) - minval),
        av_offset_frames=int(vshift - int(minidx)),
        dists=mdist.numpy(),  # mean distance per offset column
        offsets=np.arange(vshift, -vshift - 1, -1),  # the AV offset each column stands for
        windows=int(dists.shape[0]),
    )


@torch.no_grad()
def embed_windows(forward, inputs: torch.Tensor, n: int, size: int, step: int, batch_size: int = 64) -> torch.Tensor:
    """Embeddings of windows inputs[i·step : i·step + size] for i < n, batched → (n, D)."""
    out = []
    for s in range(0, n, batch_size):
        starts = range(s, min(n, s + batch_size))
        out.append(forward(torch.stack([inputs[i * step : i * step + size] for i in starts])).float().cpu())
    return torch.cat(out)


def clip_embeddings(model: SyncScorer, frames: np.ndarray, audio: np.ndarray, timing: Timing,
                    n_windows: int | None = None, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings of the clip's first `n_windows` windows (default: every full
    window, min_length − window + 1) → (N, D), (N, D). The model should be in eval mode."""
    spf = timing.samples_per_frame
    min_length = min(len(frames), len(audio) // spf)
    w, mpf = model.window, model.mels_per_frame
    full = min_length - w + 1
    n = full if n_windows is None else n_windows
    if n < 1 or n > full:
        raise ValueError(f"a clip of {min_length} frames has {full} windows of {w}; asked for {n}")
    v_in = model.frames_to_input(frames[:min_length])
    a_in = model.audio_to_input(audio, timing)
    if a_in.shape[0] < (n - 1) * mpf + w * mpf:
        raise ValueError(f"audio features too short: {a_in.shape[0]} frames for {n} windows")
    video = embed_windows(model.forward_video, v_in, n, w, 1, batch_size)
    audio_e = embed_windows(model.forward_audio, a_in, n, w * mpf, mpf, batch_size)
    return video, audio_e


def lse_scores(model: SyncScorer, frames: np.ndarray, audio: np.ndarray, timing: Timing,
               vshift: int = VSHIFT, batch_size: int = 64) -> dict:
    """LSE-D / LSE-C / AV offset of one clip: frames (T, 256, 224, 3) uint8 RGB, audio (S,).

    Returns dict(lse_d, lse_c, av_offset_frames, dists (2·vshift+1,) mean distance per offset
    column, offsets (the AV offset of each column: vshift … −vshift), windows, video_emb
    (windows, D) float32 — the video stream's embeddings, kept for distribution metrics such
    as evaluate's `frechet_sync_feat`, so that nothing is embedded twice)."""
    frames = np.asarray(frames)
    audio = np.asarray(audio, np.float32)
    min_length = min(len(frames), len(audio) // timing.samples_per_frame)
    lastframe = min_length - model.window  # windows 0 … lastframe − 1, as syncnet_python
    if lastframe < 1:
        raise ValueError(f"clip too short for a sync score: {min_length} frames (needs ≥ {model.window + 1})")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        video, audio_e = clip_embeddings(model, frames, audio, timing, lastframe, batch_size)
    finally:
        if was_training:
            model.train()
    return dict(lse_from_embeddings(video, audio_e, vshift), video_emb=video.numpy())


def shifted_lse(video_emb: torch.Tensor, audio_emb: torch.Tensor, k: int, vshift: int = VSHIFT) -> dict:
    """LSE of the clip with its audio advanced by k frames (video frame i plays with the audio
    of frame i + k; the clip is cut to the T − |k| frames that have both), from the embeddings of
    every full window of the unshifted clip (`clip_embeddings`): the cut clip's windows are
    windows of the original, so nothing is recomputed. The true AV offset is then +k.

    (Audio features near the cut edges can differ slightly from those of audio actually cut
    there: the log-mel is computed once over the whole clip.)"""
    full = video_emb.shape[0]  # T − window + 1
    n = full - abs(k) - 1  # windows of the cut clip of T − |k| frames, as syncnet_python counts them
    if n < 1:
        raise ValueError(f"a shift of {k} frames leaves no window in a clip with {full} windows")
    if k >= 0:
        return lse_from_embeddings(video_emb[:n], audio_emb[k : k + n], vshift)
    return lse_from_embeddings(video_emb[-k : -k + n], audio_emb[:n], vshift)


def load_scorer(path: str | os.PathLike, face_scale: float | None = None,
                centre_shift: float | None = None) -> tuple[nn.Module, Timing]:
    """A scorer from a file: our `sync.pt` (dims + state_dict; it carries its mouth box) or the
    official `syncnet_v2.model`, which also needs the framing of the crops (params
    faces.face_scale and faces.centre_shift) to cut its face crops."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "dims" in state and "state_dict" in state:
        return load_sync_expert(path)
    if isinstance(state, dict) and any(str(k).startswith("netcnnaud.") for k in state):
        if face_scale is None or centre_shift is None:
            raise ValueError(f"{path} is the official SyncNet: give the framing of the crops, face_scale and "
                             "centre_shift (params faces.face_scale, faces.centre_shift)")
        return load_official_syncnet(path, face_scale, centre_shift), OFFICIAL_TIMING
    raise ValueError(f"{path} is neither a sync expert checkpoint nor an official syncnet_v2.model")
