"""train_prior's voice augmentation (prior.aug_mel_*): it reaches the training batches, keeps the
training noise, and a changed augmentation starts training afresh."""
import logging

import numpy as np
import torch
from repo_params import TIMING
from test_train_prior import EPISODES, tiny, write_tokens

from nwt.models.prior_io import load_prior
from nwt.models.voice_aug import augment_mel
from nwt.train.prior import mel_augment, train_prior

torch.set_num_threads(1)
AUG = dict(aug_mel_warp=0.3, aug_mel_eq=0.3, aug_mel_gain=0.25, aug_mel_noise=1.0)


def test_mel_augment_reads_the_prior_section():
    aug = mel_augment(tiny(**AUG))
    assert (aug.warp, aug.eq, aug.gain, aug.noise) == (0.3, 0.3, 0.25, 1.0)
    assert mel_augment(tiny(aug_mel_warp=0.0, aug_mel_eq=0.0, aug_mel_gain=0.0, aug_mel_noise=0.0)).off


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
    out = augment_mel(mel, mel_augment(tiny(**AUG)), np.random.default_rng(1), TIMING.sample_rate)
    assert out.shape == mel.shape and (out - mel).abs().mean() > 0.02
