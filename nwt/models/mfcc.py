"""MFCCs exactly as python_speech_features 0.6 computes them (with its defaults), in numpy: the
audio front end of the official SyncNet (nwt.models.syncnet), which syncnet_python feeds with
`python_speech_features.mfcc(audio, samplerate)`.
"""
from __future__ import annotations

import decimal
import math

import numpy as np
from scipy.fft import dct


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


def mfcc(signal: np.ndarray, samplerate: int, winlen: float = 0.025, winstep: float = 0.01,
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
