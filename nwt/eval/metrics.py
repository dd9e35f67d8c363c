"""Objective measures used by evaluate (and the training stages' validation).

Mouth–audio correlation (our documented estimator, DESIGN.md "Evaluation"): the mouth of the
256×224 crop sits in a fixed box (the faces stage centres and scales every crop on the face);
its darkness (255 − mean grey) rises when the mouth opens (dark mouth interior). Per clip we
correlate that darkness with the audio's per-frame loudness (log RMS); the figure is the mean
Pearson r over clips. Ground-truth clips give the ceiling that a generated clip is compared to.
"""
from __future__ import annotations

import numpy as np

# mouth box as fractions of the 256×224 crop: rows, columns (measured on the faces stage's crops)
MOUTH_ROWS = (0.48, 0.60)
MOUTH_COLS = (0.38, 0.62)
LOUDNESS_FLOOR = 1e-4


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR over uint8 arrays of the same shape (RGB, all pixels)."""
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def mouth_darkness(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (T,) mean darkness of the mouth box."""
    t, h, w, _ = frames.shape
    r0, r1 = int(MOUTH_ROWS[0] * h), int(MOUTH_ROWS[1] * h)
    c0, c1 = int(MOUTH_COLS[0] * w), int(MOUTH_COLS[1] * w)
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


def mouth_audio_corr(frames: np.ndarray, audio: np.ndarray, samples_per_frame: int) -> float:
    return pearson(mouth_darkness(frames), frame_loudness(audio, samples_per_frame, len(frames)))
