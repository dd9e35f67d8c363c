"""Multi-scale patch discriminator for dVAE-Adv (hinge loss + feature matching).

The paper does not describe its discriminator; this is the pix2pixHD-style choice made cheap
for CPUs: `scales` patch discriminators, each seeing the frame average-pooled by 2^s, each a
stack of 4×4 stride-2 convolutions with few channels (LeakyReLU, no normalisation) ending in a
3×3 conv to one logit per patch. Every intermediate activation is returned for feature matching.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DISC_LAYERS = 3  # 4×4 stride-2 convolutions per patch discriminator
DISC_MAX_CHANNELS = 128  # their width is capped here


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: int, layers: int = DISC_LAYERS, max_channels: int = DISC_MAX_CHANNELS):
        super().__init__()
        convs = []
        c_in = 3
        for i in range(layers):
            c_out = min(channels * 2**i, max_channels)
            convs.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.to_logit = nn.Conv2d(c_in, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 3, H, W) → (logits (B, 1, H/2^layers, W/2^layers), features)."""
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)  # (B, C, H/2^i, W/2^i)
            feats.append(x)
        return self.to_logit(x), feats


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, scales: int, channels: int, layers: int = DISC_LAYERS):
        super().__init__()
        self.discs = nn.ModuleList([PatchDiscriminator(channels, layers) for _ in range(scales)])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """x (B, 3, H, W) in [-1, 1] → per scale (logits, features)."""
        out = []
        for i, disc in enumerate(self.discs):
            if i:
                x = F.avg_pool2d(x, 2)  # (B, 3, H/2^i, W/2^i)
            out.append(disc(x))
        return out


def d_hinge_loss(real: list, fake: list) -> torch.Tensor:
    """Discriminator hinge loss, mean over scales."""
    return sum(F.relu(1 - r[0]).mean() + F.relu(1 + f[0]).mean() for r, f in zip(real, fake)) / len(real)


def g_hinge_loss(fake: list) -> torch.Tensor:
    """Generator hinge loss (−D(fake)), mean over scales."""
    return sum(-f[0].mean() for f in fake) / len(fake)


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """L1 between discriminator features of real (detached) and fake frames, mean over layers."""
    losses = [F.l1_loss(ff, fr.detach()) for (_, r), (_, f) in zip(real, fake) for fr, ff in zip(r, f)]
    return sum(losses) / len(losses)
