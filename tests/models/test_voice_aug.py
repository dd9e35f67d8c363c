"""Voice augmentation of log-mel (nwt.models.voice_aug) on real speech: the presenter's voice
from espeak-ng, and the same sentence in a higher voice."""
import numpy as np
import pytest
import torch
from repo_params import TIMING

from nwt.models.audio_features import log_mel, mel_centres_hz
from nwt.models.voice_aug import MelAugment, augment_mel, warp_mel

TEXT = "The quick brown fox jumps over the lazy dog while we talk about the weather."


def speech(voice: str) -> torch.Tensor:
    """(4T, 80) log-mel of TEXT spoken by an espeak-ng voice."""
    synth = pytest.importorskip("nwt.data.synthetic.speech").synth
    try:
        pcm = synth(TEXT, voice, 160, 50, sample_rate=TIMING.sample_rate).pcm
    except (OSError, RuntimeError) as err:  # no espeak-ng library on this machine
        pytest.skip(f"espeak-ng unavailable: {err}")
    t = len(pcm) // TIMING.samples_per_frame
    return log_mel(np.asarray(pcm, np.float32)[: t * TIMING.samples_per_frame], TIMING)


def spectral_centroid(mel: torch.Tensor) -> float:
    """Power-weighted mean band centre (Hz) over the loud frames of a log-mel."""
    power = 10 ** (4 * mel.double() - 4)  # (M, F) back to band power
    loud = power.sum(1) > power.sum(1).max() * 1e-2
    centres = torch.from_numpy(mel_centres_hz(TIMING.sample_rate, mel.shape[1]))
    return float((power[loud] * centres).sum() / power[loud].sum())


def test_warp_moves_the_spectrum_the_way_a_higher_voice_does():
    own, high = speech("en-us"), speech("en-us+f4")
    assert spectral_centroid(high) > spectral_centroid(own)  # the premise: a higher voice, higher centroid
    up = warp_mel(own[None], np.array([1.2]), TIMING.sample_rate)[0]
    down = warp_mel(own[None], np.array([1 / 1.2]), TIMING.sample_rate)[0]
    assert spectral_centroid(down) < spectral_centroid(own) < spectral_centroid(up)
    same = warp_mel(own[None], np.array([1.0]), TIMING.sample_rate)[0]
    assert torch.allclose(same, own, atol=1e-6)  # α = 1: unchanged


def test_augment_keeps_timing_and_shape_and_is_seeded():
    own = speech("en-us")[:200]
    batch = own[None].repeat(6, 1, 1)
    aug = MelAugment(warp=0.25, eq=0.25, gain=0.25, noise=1.0)
    a = augment_mel(batch, aug, np.random.default_rng(3), TIMING.sample_rate)
    b = augment_mel(batch, aug, np.random.default_rng(3), TIMING.sample_rate)
    assert a.shape == batch.shape and torch.equal(a, b) and torch.isfinite(a).all()
    assert not torch.allclose(a[0], a[1])  # each window its own draw
    # the loudness contour over time (what lip sync reads) survives: per-frame energy stays correlated
    for i in range(6):
        r = np.corrcoef(own.mean(1).numpy(), a[i].mean(1).numpy())[0, 1]
        assert r > 0.8, (i, r)


def test_off_is_the_identity_and_draws_nothing():
    own = speech("en-us")[:40][None]
    rng = np.random.default_rng(0)
    assert augment_mel(own, MelAugment(0.0, 0.0, 0.0, 0.0), rng, TIMING.sample_rate) is own
    assert rng.integers(0, 2**62) == np.random.default_rng(0).integers(0, 2**62)


def test_noise_floor_lifts_the_quiet_parts_only():
    own = speech("en-us")[:200][None].repeat(8, 1, 1)
    noisy = augment_mel(own, MelAugment(0.0, 0.0, 0.0, 1.0), np.random.default_rng(0), TIMING.sample_rate)
    quiet = own < own.min() + 0.01  # log_mel's floor, 80 dB below the peak: silence
    assert (noisy - own)[quiet].mean() > 0.05  # the floor shows where the speech is quiet
    loud = own > own.max() - 0.25
    assert (noisy - own)[loud].abs().max() < 0.05  # and hides under the loud bands
