"""Teacher-forced figures of a prior on token clips: NLL in bits per code (with the real and with
shuffled audio), code accuracy, the unigram baseline and the style posterior's KL.

Used by train_prior's validation and by evaluate's `gen.test_nll_bits_per_code`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nwt.constants import MELS_PER_FRAME
from nwt.data.tokens import TokenClip
from nwt.models.prior import Prior
from nwt.precision import autocast

LN2 = math.log(2.0)


@dataclass
class ClipTensors:
    codes: torch.Tensor  # (T, H', W', heads) long
    mel: torch.Tensor  # (4T, n_mels) float32
    episode: int  # embedding row (n_episodes = <unk>)

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])


def to_tensors(clips: list[TokenClip], n_episodes: int) -> list[ClipTensors]:
    out = []
    for c in clips:
        row = c.episode_index if 0 <= c.episode_index < n_episodes else n_episodes
        out.append(ClipTensors(torch.from_numpy(c.codes.astype(np.int64)), torch.from_numpy(c.mel), row))
    return out


def eval_windows(clips: list[ClipTensors], window: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Non-overlapping windows of one common length (≤ window) covering the val clips."""
    if not clips:
        return []
    L = min(window, min(c.frames for c in clips))
    out = []
    for c in clips:
        for s in range(0, c.frames - L + 1, L):
            out.append((c.codes[s : s + L], c.mel[s * MELS_PER_FRAME : (s + L) * MELS_PER_FRAME], c.episode))
    return out


def unigram_log2p(clips: list[ClipTensors], heads: int, num_codes: int) -> torch.Tensor:
    """(heads, num_codes) log2 probabilities of the train-set code distribution per head
    (add-half smoothing so unseen codes cost finite bits)."""
    counts = torch.zeros(heads, num_codes, dtype=torch.float64)
    for c in clips:
        flat = c.codes.reshape(-1, heads)
        for k in range(heads):
            counts[k] += torch.bincount(flat[:, k], minlength=num_codes)[:num_codes].double()
    p = (counts + 0.5) / (counts + 0.5).sum(-1, keepdim=True)
    return p.log2()


@torch.no_grad()
def evaluate(model: Prior, windows, batch_size: int, device, unigram: torch.Tensor) -> dict:
    """Teacher-forced NLL (bits/code), the same with each window's mel taken from the next
    window (shuffled audio), code accuracy, the unigram cross-entropy of the codes, and the
    style posterior's KL to N(0, I) (nats per window, 0 without a style latent).

    With a style latent the NLL figures are negative ELBOs (an upper bound on the NLL): the
    cross-entropy with z = the posterior mean of each window's own codes, plus the window's KL
    (in bits) spread over its codes — so the reference encoder cannot lower them by leaking the
    window's content."""
    if not windows:
        nan = float("nan")
        return dict(nll_bits_per_code=nan, nll_shuffled_audio_bits_per_code=nan, unigram_entropy_bits=nan,
                    code_accuracy=nan, kl=nan)
    was_training = model.training
    model.eval()
    codes_all = torch.stack([w[0] for w in windows])
    mel_all = torch.stack([w[1] for w in windows])
    ep_all = torch.tensor([w[2] for w in windows], dtype=torch.long)
    if len(windows) > 1:
        mel_shuf = mel_all.roll(1, dims=0)
    else:  # one window: pair frames with audio half a window away
        mel_shuf = mel_all.roll(mel_all.shape[1] // 2, dims=1)
    tot = dict(nll=0.0, shuf=0.0, correct=0.0, uni=0.0, kl=0.0)
    n = 0
    K = model.dims.num_codes
    for s in range(0, len(windows), batch_size):
        codes = codes_all[s : s + batch_size].to(device)
        ep = ep_all[s : s + batch_size].to(device)
        for key, mel in (("nll", mel_all), ("shuf", mel_shuf)):
            with autocast(device):
                logits, aux = model(codes, mel[s : s + batch_size].to(device), ep, return_aux=True)
                kl = aux["kl"]
            flat = logits.reshape(-1, K).float()
            target = codes.reshape(-1)
            kl_sum = kl.float().sum().item() * codes.shape[0]  # nats, all windows of the batch
            tot[key] += torch.nn.functional.cross_entropy(flat, target, reduction="sum").item() + kl_sum
            if key == "nll":
                tot["correct"] += (flat.argmax(-1) == target).sum().item()
                tot["kl"] += kl_sum
        heads = codes.shape[-1]
        flat_codes = codes.reshape(-1, heads).cpu()
        tot["uni"] += -sum(unigram[k][flat_codes[:, k]].sum().item() for k in range(heads))
        n += codes.numel()
    model.train(was_training)
    return dict(
        nll_bits_per_code=tot["nll"] / n / LN2,
        nll_shuffled_audio_bits_per_code=tot["shuf"] / n / LN2,
        unigram_entropy_bits=tot["uni"] / n,
        code_accuracy=tot["correct"] / n,
        kl=tot["kl"] / len(windows),
    )


def evaluate_nll(model: Prior, clips: list[TokenClip], train_clips: list[TokenClip] | None = None,
                 window: int | None = None, batch_size: int = 8) -> dict:
    """Teacher-forced figures of a trained prior on token clips (e.g. the test split).

    The unigram baseline comes from `train_clips` when given, else from `clips` themselves.
    """
    device = next(model.parameters()).device
    d = model.dims
    tensors = to_tensors(clips, d.n_episodes)
    unigram = unigram_log2p(to_tensors(train_clips, d.n_episodes) if train_clips else tensors, d.code_heads,
                            d.num_codes)
    return evaluate(model, eval_windows(tensors, window or d.context_frames), batch_size, device, unigram)
