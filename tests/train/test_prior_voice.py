"""train_prior's voice augmentation (prior.aug_mel_*, aug_reverb, aug_tempo): it reaches the training
batches, keeps the training noise, and a changed augmentation starts training afresh."""
import logging

import numpy as np
import torch
from repo_params import TIMING
from test_train_prior import EPISODES, tiny, write_tokens

from nwt.eval.nll import ClipTensors
from nwt.models.prior_io import load_prior
from nwt.models.voice_aug import augment_mel
from nwt.train.prior import mel_augment, sample_batch, train_prior

torch.set_num_threads(1)
AUG = dict(aug_mel_warp=0.3, aug_mel_eq=0.3, aug_mel_gain=0.25, aug_mel_noise=1.0, aug_reverb=0.5, aug_tempo=0.2)


def test_mel_augment_reads_the_prior_section():
    aug = mel_augment(tiny(**AUG))
    assert (aug.warp, aug.eq, aug.gain, aug.noise, aug.reverb) == (0.3, 0.3, 0.25, 1.0, 0.5)
    assert mel_augment(tiny(aug_mel_warp=0.0, aug_mel_eq=0.0, aug_mel_gain=0.0, aug_mel_noise=0.0, aug_reverb=0.0)).off


def test_augmented_prior_still_learns_to_listen(tmp_path, caplog):
    """The augmentation keeps what the audio says about the codes (here: which band pair is lit),
    so the prior still beats the shuffled-audio baseline; changing it starts afresh."""
    tokens = write_tokens(tmp_path / "tokens")
    m = train_prior(tiny(steps=30, **AUG), TIMING, tokens, tmp_path / "a", tmp_path / "ra", EPISODES)
    val = m["val"]
    assert val["nll_bits_per_code"] < val["nll_shuffled_audio_bits_per_code"] - 0.1, val
    prior, _ = load_prior(tmp_path / "a" / "prior.pt")
    assert prior is not None
    caplog.set_level(logging.INFO, logger="nwt")
    train_prior(tiny(steps=30, **{**AUG, "aug_mel_warp": 0.1}), TIMING, tokens, tmp_path / "a", tmp_path / "ra",
                EPISODES, stop_after=2)
    assert "starting fresh" in caplog.text  # the augmentation is part of the resume fingerprint


def test_augmentation_changes_the_mel_not_its_frames():
    mel = torch.from_numpy(np.random.default_rng(0).normal(0, 0.3, (4, 32, 8)).astype(np.float32))
    out = augment_mel(mel, mel_augment(tiny(**AUG)), np.random.default_rng(1), TIMING)
    assert out.shape == mel.shape and (out - mel).abs().mean() > 0.02


def test_tempo_batches_play_speech_and_video_at_one_rate():
    """aug_tempo: each window is its clip sped up or slowed down, codes and mel alike: a frame's
    code stays the one under its own mel frames."""
    clips = []
    for n, frames in enumerate((30, 45)):
        codes = torch.arange(frames).reshape(frames, 1, 1, 1).expand(frames, 2, 2, 1).clone()  # code = frame
        mel = (torch.arange(4 * frames, dtype=torch.float32) / 4)[:, None].expand(4 * frames, 8).clone()  # = time
        clips.append(ClipTensors(codes, mel, n))
    rates = set()
    for seed in range(20):
        codes, mel, _ = sample_batch(clips, 4, 16, np.random.default_rng(seed), tempo=0.25)
        assert codes.shape == (4, 16, 2, 2, 1) and mel.shape == (4, 64, 8)
        for c, m in zip(codes[:, :, 0, 0, 0].float(), mel[:, :, 0]):
            rate = float(m[1] - m[0]) * 4  # source frames per output frame
            assert 1 / 1.25 - 1e-4 <= rate <= 1.25 + 1e-4
            rates.add(round(rate, 2))
            centre = m.reshape(16, 4)[:, 1:3].mean(1) - 0.375  # source frame under each frame's mel
            assert (c - centre).abs().max() <= 0.5 + 1e-4
    assert min(rates) < 0.9 and max(rates) > 1.1  # both ways
    plain = sample_batch(clips, 4, 16, np.random.default_rng(0))[0][:, :, 0, 0, 0]
    assert (plain[:, 1:] - plain[:, :-1] == 1).all()  # tempo 0: consecutive frames
