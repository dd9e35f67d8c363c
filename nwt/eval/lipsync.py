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
- the official network (`OfficialSyncNet`): the published `S` architecture of syncnet_python's
  `SyncNetModel.py`, loaded from `syncnet_v2.model` (a state dict) when a path is given. Its
  front ends follow the original: 13 MFCCs (python_speech_features 0.6 defaults, reimplemented
  in numpy, `mfcc`) of the int16-scaled audio, and 224×224 BGR face crops in 0–255 taken with
  run_pipeline.py's crop geometry (`official_face_crops`). Its embeddings are not normalised
  (published LSE-D values are around 6–8).
"""
from __future__ import annotations

import decimal
import math
import os
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.fft import dct

from nwt.constants import Timing
from nwt.geometry import FACE_CENTRE_SHIFT

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


# ---------------------------------------------------------------- the official SyncNet
class SyncNetS(nn.Module):
    """The `S` network of syncnet_python's SyncNetModel.py (layer for layer, same names), so that
    the published `syncnet_v2.model` state dict loads into it.

    Audio in: (N, 1, 13, 20) MFCC; lips in: (N, 3, 5, 224, 224) BGR in 0–255; out: (N, 1024)."""

    def __init__(self, num_layers_in_fc_layers: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers),
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnaud(x)  # (N, 512, 1, 1)
        return self.netfcaud(mid.view(mid.shape[0], -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnlip(x)  # (N, 512, 1, 1, 1)
        return self.netfclip(mid.view(mid.shape[0], -1))


OFFICIAL_SIZE = 224  # lip input side
OFFICIAL_CROP_SCALE = 0.4  # run_pipeline.py's `cs`: the face crop is padded by this share of the box
OFFICIAL_PAD_VALUE = 110  # grey padding outside the frame (run_pipeline.py)
OFFICIAL_FACE_SCALE = 2.0  # our crop height / face-box height (params faces.face_scale default)


def official_face_crops(frames: np.ndarray, face_scale: float = OFFICIAL_FACE_SCALE,
                        face_centre_shift: float = FACE_CENTRE_SHIFT) -> np.ndarray:
    """(T, 256, 224, 3) RGB crops → (T, 3, 224, 224) uint8 BGR face crops as syncnet_python's
    run_pipeline.py cuts them from a face track: box half-size bs, rows from the box centre − bs
    to + bs·(1 + 2·cs), columns ± bs·(1 + cs), padded with 110 outside the image, resized to
    224×224. Our faces stage centres each crop `face_centre_shift` face heights below the face
    centre with a face box `crop height / face_scale` high, which fixes the box."""
    t, h, w, _ = frames.shape
    bs = h / face_scale / 2.0  # half the face-box size
    my = h / 2.0 - face_centre_shift * 2.0 * bs  # face centre row
    mx = w / 2.0
    bsi = int(bs * (1 + OFFICIAL_CROP_SCALE))  # padding, then the box centre in padded coordinates
    my, mx = my + bsi, mx + bsi
    r0, r1 = int(my - bs), int(my + bs * (1 + 2 * OFFICIAL_CROP_SCALE))
    c0, c1 = int(mx - bs * (1 + OFFICIAL_CROP_SCALE)), int(mx + bs * (1 + OFFICIAL_CROP_SCALE))
    out = np.empty((t, 3, OFFICIAL_SIZE, OFFICIAL_SIZE), np.uint8)
    for i in range(t):
        bgr = np.ascontiguousarray(frames[i, :, :, ::-1])
        padded = np.pad(bgr, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=OFFICIAL_PAD_VALUE)
        out[i] = cv2.resize(padded[r0:r1, c0:c1], (OFFICIAL_SIZE, OFFICIAL_SIZE)).transpose(2, 0, 1)
    return out


class OfficialSyncNet(nn.Module):
    """The published SyncNet behind the `SyncScorer` interface (25 fps / 16 kHz only)."""

    window = 5
    mels_per_frame = 4  # 100 Hz MFCC at 25 fps

    def __init__(self, face_scale: float = OFFICIAL_FACE_SCALE):
        super().__init__()
        self.net = SyncNetS()
        self.face_scale = face_scale

    def frames_to_input(self, frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(official_face_crops(np.asarray(frames), self.face_scale))  # (T, 3, 224, 224)

    def audio_to_input(self, audio: np.ndarray, timing: Timing) -> torch.Tensor:
        if (timing.fps, timing.sample_rate) != (25, 16000):
            raise ValueError(f"the official SyncNet works at 25 fps / 16 kHz, not {timing.fps} fps / {timing.sample_rate} Hz")
        pcm = np.asarray(audio, np.float64) * 32768.0  # syncnet_python reads int16 PCM with scipy
        return torch.from_numpy(mfcc(pcm, timing.sample_rate).astype(np.float32))  # (A, 13)

    def forward_video(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 5, 3, 224, 224) → (N, 3, 5, 224, 224) float 0–255, as imtv[:, :, i:i+5]
        return self.net.forward_lip(x.permute(0, 2, 1, 3, 4).float())

    def forward_audio(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 20, 13) → (N, 1, 13, 20), as cct[:, :, :, 4i:4i+20]
        return self.net.forward_aud(x.transpose(1, 2).unsqueeze(1).float())


def load_official_syncnet(path: str | os.PathLike) -> OfficialSyncNet:
    """Build `S` and load `syncnet_v2.model` (a state dict) into it, in eval mode. Like the
    original `loadParameters`, keys missing from the file (BatchNorm `num_batches_tracked`,
    absent from files saved by old torch) keep their initial values; any other mismatch fails."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official SyncNet weights not found at {path}: download syncnet_v2.model "
                                "with syncnet_python's download_model.sh and give its path")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = OfficialSyncNet()
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path} is not a syncnet_v2.model state dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def load_scorer(path: str | os.PathLike) -> tuple[nn.Module, Timing]:
    """A scorer from a file: our `sync.pt` (dims + state_dict) or the official `syncnet_v2.model`."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "dims" in state and "state_dict" in state:
        from nwt.models.sync_expert import load_sync_expert

        return load_sync_expert(path)
    if isinstance(state, dict) and any(str(k).startswith("netcnnaud.") for k in state):
        return load_official_syncnet(path), Timing(25, 16000)
    raise ValueError(f"{path} is neither a sync expert checkpoint nor an official syncnet_v2.model")


# ---------------------------------------------------------------- MFCC (python_speech_features 0.6)
def _round_half_up(x: float) -> int:
    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def _hz2mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def _filterbanks(nfilt: int, nfft: int, samplerate: int, lowfreq: float, highfreq: float) -> np.ndarray:
    melpoints = np.linspace(_hz2mel(lowfreq), _hz2mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(melpoints) / samplerate)
    fbank = np.zeros([nfilt, nfft // 2 + 1])
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fbank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fbank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fbank


def mfcc(signal: np.ndarray, samplerate: int = 16000, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, lowfreq: float = 0.0, highfreq: float | None = None,
         preemph: float = 0.97, ceplifter: int = 22, append_energy: bool = True) -> np.ndarray:
    """`python_speech_features.mfcc` with its defaults (what syncnet_python calls), in numpy:
    pre-emphasis, rectangular 25 ms frames every 10 ms (the last zero-padded), power spectrum
    |rfft|²/nfft, 26 triangular mel filters, log, orthonormal DCT-II, 13 coefficients, sine
    lifter 22, c0 replaced by the log frame energy → (frames, 13). Frames = 1 + ceil((S − 400) /
    160), i.e. 4T − 1 for T video frames of 640 samples."""
    signal = np.asarray(signal, np.float64)
    highfreq = highfreq or samplerate / 2
    sig = np.append(signal[0], signal[1:] - preemph * signal[:-1])
    frame_len, frame_step = _round_half_up(winlen * samplerate), _round_half_up(winstep * samplerate)
    slen = len(sig)
    numframes = 1 if slen <= frame_len else 1 + int(math.ceil((1.0 * slen - frame_len) / frame_step))
    padlen = int((numframes - 1) * frame_step + frame_len)
    padded = np.concatenate((sig, np.zeros((padlen - slen,))))
    idx = np.arange(frame_len)[None] + frame_step * np.arange(numframes)[:, None]
    frames = padded[idx]
    pspec = 1.0 / nfft * np.square(np.abs(np.fft.rfft(frames, nfft)))
    energy = pspec.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = pspec @ _filterbanks(nfilt, nfft, samplerate, lowfreq, highfreq).T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    if ceplifter > 0:
        feat = feat * (1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter))
    if append_energy:
        feat[:, 0] = np.log(energy)
    return feat
