"""Log-mel features aligned to video frames: `nwt.constants.MELS_PER_FRAME` mel frames per video frame.

80 bins, 25 ms Hann window, hop = samples per frame / 4 (10 ms at 16 kHz / 25 fps). The
signal is padded so that mel frame i is centred on sample i × hop: clip audio of T frames
gives exactly 4T mel frames.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from nwt.constants import N_MELS, Timing

LOG_FLOOR = 1e-5


def hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def mel_centres_hz(sample_rate: int, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels,) centre frequency in Hz of each mel band of `mel_filterbank`."""
    return mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))[1:-1]


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS) -> torch.Tensor:
    """Slaney-style triangular mel filters, (n_mels, n_fft // 2 + 1), area-normalised."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = mel_points[:-2, None], mel_points[1:-1, None], mel_points[2:, None]
    up = (fft_freqs[None] - lower) / (centre - lower)
    down = (upper - fft_freqs[None]) / (upper - centre)
    weights = np.maximum(0, np.minimum(up, down)) * (2.0 / (upper - lower))
    return torch.from_numpy(weights.astype(np.float32))


def log_mel(audio: np.ndarray | torch.Tensor, timing: Timing) -> torch.Tensor:
    """(S,) float audio → (S // mel_hop, N_MELS) log10 mel, floored and range-compressed.

    S should be a whole number of video frames (T × samples_per_frame) → 4T mel frames.
    """
    x = torch.as_tensor(audio, dtype=torch.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio (S,), got shape {tuple(x.shape)}")
    n_fft = timing.mel_window
    n_out = x.shape[0] // timing.mel_hop
    if n_out == 0:
        raise ValueError(f"audio of {x.shape[0]} samples is shorter than one mel hop ({timing.mel_hop})")
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, timing.mel_hop, window=window, center=True, pad_mode="constant", return_complex=True)
    power = spec[:, :n_out].abs() ** 2  # (F, n_out)
    mel = mel_filterbank(timing.sample_rate, n_fft) @ power  # (N_MELS, n_out)
    logmel = torch.log10(mel.clamp_min(LOG_FLOOR))
    # as whisper: clamp to 8 decades below the peak, then scale to roughly [-1, 1]
    logmel = torch.maximum(logmel, logmel.max() - 8.0)
    return ((logmel + 4.0) / 4.0).T.contiguous()  # (n_out, N_MELS)
