"""Voice augmentation of log-mel (nwt.models.voice_aug) on real speech: the presenter's voice
from espeak-ng, and the same sentence in a higher voice."""
import numpy as np
import pytest
import torch
from repo_params import TIMING

from nwt.models.audio_features import log_mel, mel_centres_hz
from nwt.models.voice_aug import MelAugment, add_reverb, augment_mel, tempo_span, tempo_window, warp_mel

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
    a = augment_mel(batch, aug, np.random.default_rng(3), TIMING)
    b = augment_mel(batch, aug, np.random.default_rng(3), TIMING)
    assert a.shape == batch.shape and torch.equal(a, b) and torch.isfinite(a).all()
    assert not torch.allclose(a[0], a[1])  # each window its own draw
    # the loudness contour over time (what lip sync reads) survives: per-frame energy stays correlated
    for i in range(6):
        r = np.corrcoef(own.mean(1).numpy(), a[i].mean(1).numpy())[0, 1]
        assert r > 0.8, (i, r)


def test_off_is_the_identity_and_draws_nothing():
    own = speech("en-us")[:40][None]
    rng = np.random.default_rng(0)
    assert augment_mel(own, MelAugment(0.0, 0.0, 0.0, 0.0), rng, TIMING) is own
    assert rng.integers(0, 2**62) == np.random.default_rng(0).integers(0, 2**62)


def test_noise_floor_lifts_the_quiet_parts_only():
    own = speech("en-us")[:200][None].repeat(8, 1, 1)
    noisy = augment_mel(own, MelAugment(0.0, 0.0, 0.0, 1.0), np.random.default_rng(0), TIMING)
    quiet = own < own.min() + 0.01  # log_mel's floor, 80 dB below the peak: silence
    assert (noisy - own)[quiet].mean() > 0.05  # the floor shows where the speech is quiet
    loud = own > own.max() - 0.25
    assert (noisy - own)[loud].abs().max() < 0.05  # and hides under the loud bands


def test_reverb_prolongs_each_sound_and_leaves_onsets():
    own = speech("en-us")[:200][None].repeat(4, 1, 1)
    wet = add_reverb(own, np.full(4, 0.6), np.array([0.0, 0.3, 0.6, 1.0]), TIMING.mel_hop / TIMING.sample_rate)
    assert torch.allclose(wet[0], own[0], atol=1e-5)  # no tail energy: unchanged
    assert (wet >= own - 1e-5).all()  # a tail only adds power
    energy = wet.mean(2)  # (4, M)
    # more tail → the loudness contour smoother over time (what a room does to speech) …
    roughness = (energy[:, 1:] - energy[:, :-1]).abs().mean(1)
    assert roughness[1] < roughness[0] and roughness[3] < roughness[1]
    # … while the loudness contour keeps its shape (lip sync reads it) and speech starts where it did
    onset = lambda e: int(torch.nonzero(e > e.min() + 0.25)[0])  # noqa: E731
    for i in (1, 2, 3):
        assert np.corrcoef(energy[0].numpy(), energy[i].numpy())[0, 1] > 0.6  # 0.73 at RT60 0.6 s, tail = direct
        assert onset(energy[i]) == onset(energy[0])


def test_tempo_window_reads_speech_and_video_at_the_same_rate():
    frames = 40
    codes = torch.arange(frames)[:, None]  # (T, 1): each frame's code is its index
    mel = torch.arange(frames * 4, dtype=torch.float32)[:, None]  # (4T, 1): each mel frame its position
    for rate in (0.8, 1.0, 1.25):
        assert tempo_span(16, rate) >= 16 and (tempo_span(16, rate) - 1) * 4 <= 4 * 16 * max(rate, 1)
        c, m = tempo_window(codes, mel, 5, 16, rate)
        assert c.shape == (16, 1) and m.shape == (64, 1)
        assert torch.allclose(m[:, 0], 20 + torch.arange(64) * rate)  # speech read at `rate`
        # each video frame is the source frame nearest the middle of its own mel frames (source
        # frame k's four mel frames are centred on mel position 4k + 1.5)
        centre = ((m[1::4, 0] + m[2::4, 0]) / 2 - 1.5) / 4
        assert (c[:, 0] - centre).abs().max() <= 0.5 + 1e-5
    assert torch.equal(tempo_window(codes, mel, 5, 16, 1.0)[0][:, 0], torch.arange(5, 21))
