"""Objective measures, one definition each: image fidelity (PSNR, SSIM, sharpness) for the dVAE's
validation, the x264 comparison and evaluate; mouth–audio correlation for evaluate.

Mouth–audio correlation (our documented estimator, docs/design.md): the mouth of the 256×224
crop sits in a box fixed by the framing (the faces stage centres and scales every crop on the
face; `nwt.geometry.mouth_box` of faces.face_scale and faces.centre_shift); its darkness (255 −
mean grey) rises when the mouth opens (dark mouth interior). Per clip we correlate that darkness
with the audio's per-frame loudness (log RMS); the figure is the mean Pearson r over clips.
Ground-truth clips give the ceiling that a generated clip is compared to.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from nwt.geometry import Box

LOUDNESS_FLOOR = 1e-4
PSNR_IDENTICAL_DB = 100.0  # the PSNR of a frame equal to its reference


def psnr_per_frame(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(N,) RGB PSNR (dB) of each frame of uint8 arrays (N, H, W, 3); identical frames count as
    100 dB (so that one perfect frame cannot make a mean infinite)."""
    ref, tst = reference.astype(np.float64), test.astype(np.float64)
    mse = ((ref - tst) ** 2).reshape(len(ref), -1).mean(axis=1)
    return np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)), PSNR_IDENTICAL_DB)


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR of a set of frames: the mean over frames of each frame's PSNR (`psnr_per_frame`).

    The one PSNR definition of nwt: every `psnr_db` metric key (train_dvae val/unseen, the
    x264 rate–distortion points, evaluate's recon and codec) is this. (A PSNR of the MSE pooled
    over a clip weighs its worst frames less; evaluate's recon.psnr_db used that before 2026-12.)"""
    return float(psnr_per_frame(reference, test).mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # (size, size)


def ssim(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(N,) SSIM of each frame (Wang et al. 2004): 11×11 Gaussian window (σ = 1.5), K1 = 0.01,
    K2 = 0.03, data range 255, per RGB channel on uint8 values over the 'valid' window positions,
    averaged over channels and positions — scikit-image's `structural_similarity` with
    gaussian_weights=True, use_sample_covariance=False, data_range=255 (checked in a test)."""
    x = torch.from_numpy(reference).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    y = torch.from_numpy(test).permute(0, 3, 1, 2).float()
    w = _gaussian_window()[None, None].repeat(3, 1, 1, 1)  # (3, 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(t):
        return F.conv2d(t, w, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()


def laplacian_variance(frames: np.ndarray) -> np.ndarray:
    """(N,) variance of the Laplacian of each frame's luma (a standard sharpness measure)."""
    return np.array([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames])


def sharpness_ratio(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean Laplacian variance of `test` over that of `reference` (1 = as sharp; < 1 blurrier)."""
    return float(laplacian_variance(test).mean() / max(laplacian_variance(reference).mean(), 1e-12))


def mouth_darkness(frames: np.ndarray, box: Box) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (T,) mean darkness of the mouth box, `box` = ((row0, row1),
    (col0, col1)) in crop fractions: `nwt.geometry.mouth_box` of the faces params."""
    t, h, w, _ = frames.shape
    (rows, cols) = box
    r0, r1 = int(rows[0] * h), int(rows[1] * h)
    c0, c1 = int(cols[0] * w), int(cols[1] * w)
    box = frames[:, r0:r1, c0:c1].astype(np.float32)
    grey = box @ np.array([0.299, 0.587, 0.114], np.float32)
    return 255.0 - grey.reshape(t, -1).mean(axis=1)


def frame_loudness(audio: np.ndarray, samples_per_frame: int, n_frames: int) -> np.ndarray:
    """(S,) audio → (n_frames,) log10 RMS per video frame."""
    audio = np.pad(audio[: n_frames * samples_per_frame], (0, max(0, n_frames * samples_per_frame - len(audio))))
    rms = np.sqrt(np.mean(audio.reshape(n_frames, samples_per_frame) ** 2, axis=1))
    return np.log10(np.maximum(rms, LOUDNESS_FLOOR))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def mouth_audio_corr(frames: np.ndarray, audio: np.ndarray, samples_per_frame: int, box: Box) -> float:
    """Pearson r of the mouth box's darkness (`box`: see mouth_darkness) and the log loudness."""
    return pearson(mouth_darkness(frames, box), frame_loudness(audio, samples_per_frame, len(frames)))
