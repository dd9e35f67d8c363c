"""Voice augmentation in the log-mel domain: make one speaker's training audio sound like many.

The corpus holds one presenter's voice (by design: a real user has footage of one presenter), so a
model that listens to the log-mel learns that voice's formants and pitch, and other voices move
its input off what it saw. These transforms, drawn per training window, move the presenter's own
log-mel the ways other voices differ, while the timing (what carries lip sync) stays untouched:

- frequency warp (vocal-tract length): the spectrum scaled along frequency by α, i.e. band b takes
  the value at f_b / α (interpolated between band centres in Hz): α > 1 moves formants and
  harmonics up (a shorter vocal tract, a higher voice), α < 1 down. α = exp(U(−ln(1 + warp),
  ln(1 + warp))), one per window.
- random smooth EQ (microphone, room, vocal effort): a smooth curve over the bands, a random
  tilt plus cosines of 1–3 cycles across the bands, its peak ± eq log-mel units.
- gain: the whole window ± gain log-mel units (0.25 = 10 dB).
- noise floor: a flat noise spectrum (per band and mel frame exponentially distributed power, as
  a noise spectrogram's) added below the window's peak by U(noise, 2) log-mel units (1 unit = 40
  dB; noise = 0 is off).
- reverb (a room): late reverberation as an exponentially decaying tail in the power domain,
  y[t] = x[t] + Σ_k≥1 g·d^k·x[t−k] per band, d = 10^(−6·hop/RT60) (−60 dB after RT60 s), RT60 ~
  U(0.1, reverb) s and the tail's energy g·d/(1−d) ~ U(0, 1) × the direct sound's (reverb = 0 is
  off). It smears each sound's end over the next ones, as a broadcast studio or a phone does.

All act on log-mel as nwt.models.audio_features.log_mel makes it ((log10 power + 4) / 4), so
they need no audio and no new data: cheap enough to draw fresh each training step. Nothing
changes at generation: only training inputs are augmented. `tempo_window` (the prior's
`aug_tempo`, off by default) plays a window faster or slower, its video codes with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nwt.constants import Timing
from nwt.models.audio_features import mel_centres_hz

EQ_CYCLES = (1, 2, 3)  # cosine components of the random EQ, in cycles across the bands
NOISE_TOP = 2.0  # the noise floor lies at most this far (log-mel units, 80 dB) below the window's peak
REVERB_MIN_S = 0.1  # shortest RT60 drawn (a dry booth)


@dataclass(frozen=True)
class MelAugment:
    """How strongly to augment (each 0 = off); see the module docstring for the units."""

    warp: float
    eq: float
    gain: float
    noise: float
    reverb: float = 0.0  # longest RT60 in seconds

    @property
    def off(self) -> bool:
        return self.warp <= 0 and self.eq <= 0 and self.gain <= 0 and self.noise <= 0 and self.reverb <= 0


def warp_mel(mel: torch.Tensor, alphas: np.ndarray, sample_rate: int) -> torch.Tensor:
    """(B, M, F) log-mel, (B,) frequency scales → (B, M, F): band b takes the input's value at
    f_b / α (linear interpolation between band centres in Hz, edge bands beyond the range)."""
    b, _, n = mel.shape
    centres = mel_centres_hz(sample_rate, n)  # (F,)
    src = centres[None] / np.asarray(alphas, np.float64)[:, None]  # (B, F) where each band reads from
    pos = np.interp(src, centres, np.arange(n, dtype=np.float64))  # fractional band index, clamped
    lo = np.floor(pos).astype(np.int64).clip(0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = torch.from_numpy((pos - lo).astype(np.float32))[:, None, :]  # (B, 1, F)
    lo_t = torch.from_numpy(lo)[:, None, :].expand(b, mel.shape[1], n)
    hi_t = torch.from_numpy(hi)[:, None, :].expand(b, mel.shape[1], n)
    return torch.gather(mel, 2, lo_t) * (1 - frac) + torch.gather(mel, 2, hi_t) * frac


def random_eq(b: int, n: int, amplitude: float, rng: np.random.Generator) -> torch.Tensor:
    """(B, F) smooth random curves over F bands, each scaled so that its largest |value| is ≤ amplitude."""
    x = np.linspace(0.0, 1.0, n)
    curves = rng.uniform(-1, 1, (b, 1)) * (x - 0.5)[None]  # tilt
    for cycles in EQ_CYCLES:
        phase = rng.uniform(0, 2 * np.pi, (b, 1))
        curves = curves + rng.uniform(-1, 1, (b, 1)) * np.cos(2 * np.pi * cycles * x[None] + phase) / cycles
    peak = np.abs(curves).max(1, keepdims=True).clip(1e-6)
    scale = amplitude * rng.uniform(0, 1, (b, 1)) / peak
    return torch.from_numpy((curves * scale).astype(np.float32))


def add_noise_floor(mel: torch.Tensor, below: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Add a flat noise spectrum `below` (B,) log-mel units under each window's peak, in power."""
    peak = mel.amax(dim=(1, 2))  # (B,)
    level = peak - torch.from_numpy(np.asarray(below, np.float32))  # (B,) log-mel units
    texture = torch.from_numpy(rng.exponential(1.0, mel.shape).astype(np.float32))  # (B, M, F)
    return from_power(to_power(mel) + texture * to_power(level[:, None, None]))


def to_power(mel: torch.Tensor) -> torch.Tensor:
    """log-mel as nwt.models.audio_features.log_mel makes it → mel power."""
    return 10 ** (4 * mel - 4)


def from_power(power: torch.Tensor) -> torch.Tensor:
    return (torch.log10(power) + 4) / 4


def add_reverb(mel: torch.Tensor, rt60_s: np.ndarray, wet: np.ndarray, hop_s: float) -> torch.Tensor:
    """(B, M, F) log-mel, (B,) RT60s in seconds and tail-to-direct energy ratios → (B, M, F) with
    each window's exponentially decaying tail (causal, along time, the same in every band)."""
    b, m, f = mel.shape
    decay = 10 ** (-6 * hop_s / np.asarray(rt60_s, np.float64))  # (B,) power decay per mel frame
    gain = np.asarray(wet, np.float64) * (1 - decay) / decay  # so that Σ_k≥1 g·d^k = wet
    lags = np.arange(m, dtype=np.float64)  # 0 … M−1
    kernel = np.where(lags[None] == 0, 1.0, gain[:, None] * decay[:, None] ** lags[None])  # (B, M)
    weight = torch.from_numpy(kernel[:, ::-1].astype(np.float32).copy())  # conv1d correlates: flip
    weight = weight.repeat_interleave(f, 0)[:, None, :]  # (B·F, 1, M)
    x = to_power(mel).permute(0, 2, 1).reshape(1, b * f, m)  # (1, B·F, M)
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (m - 1, 0)), weight, groups=b * f)
    return from_power(y.reshape(b, f, m).permute(0, 2, 1))


def augment_mel(mel: torch.Tensor, aug: MelAugment, rng: np.random.Generator, timing: Timing) -> torch.Tensor:
    """(B, M, F) log-mel training windows → augmented copies, one draw per window (from `rng`)."""
    if aug.off:
        return mel
    b, _, n = mel.shape
    out = mel
    if aug.warp > 0:
        span = np.log1p(aug.warp)
        out = warp_mel(out, np.exp(rng.uniform(-span, span, b)), timing.sample_rate)
    if aug.eq > 0:
        out = out + random_eq(b, n, aug.eq, rng)[:, None, :]
    if aug.gain > 0:
        out = out + torch.from_numpy(aug.gain * rng.uniform(-1, 1, b).astype(np.float32))[:, None, None]
    if aug.reverb > 0:
        rt60 = rng.uniform(REVERB_MIN_S, max(aug.reverb, REVERB_MIN_S), b)
        out = add_reverb(out, rt60, rng.uniform(0, 1, b), timing.mel_hop / timing.sample_rate)
    if aug.noise > 0:
        out = add_noise_floor(out, rng.uniform(min(aug.noise, NOISE_TOP), NOISE_TOP, b), rng)
    return out.contiguous()


def tempo_span(frames: int, rate: float) -> int:
    """Source frames that `frames` output frames played at `rate` read (tempo_window)."""
    return max(frames, int(np.ceil(frames * rate)))


def tempo_window(codes: torch.Tensor, mel: torch.Tensor, start: int, frames: int, rate: float):
    """A window of a clip played `rate` times as fast (speech and video together; no pitch change):
    codes (T, ...) per video frame, mel (MELS_PER_FRAME·T, F) → codes (frames, ...), mel
    (MELS_PER_FRAME·frames, F) from source frame `start` on. Mel frame j reads the source at
    j·rate (linear interpolation); video frame i takes the source frame nearest the centre of its
    mel frames (round(i·rate + 0.375·(rate − 1)) frames on): frames repeat when slowed, drop when sped up."""
    per = mel.shape[0] // codes.shape[0]
    src = start + np.floor(np.arange(frames) * rate + 0.375 * (rate - 1) + 0.5).astype(np.int64)
    src = src.clip(start, codes.shape[0] - 1)
    pos = start * per + np.arange(frames * per) * rate  # (frames·per,) fractional source mel frames
    lo = np.floor(pos).astype(np.int64).clip(0, mel.shape[0] - 1)
    hi = (lo + 1).clip(0, mel.shape[0] - 1)
    frac = torch.from_numpy((pos - np.floor(pos)).astype(np.float32))[:, None]
    return codes[torch.from_numpy(src)], mel[torch.from_numpy(lo)] * (1 - frac) + mel[torch.from_numpy(hi)] * frac
