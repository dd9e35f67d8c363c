"""Reference encoder of the prior's unlabelled style latent (after Hsu et al. 2019, "Hierarchical
generative modeling for controllable speech synthesis"): a clip's memcodes → a diagonal Gaussian.

    codes (B, T, H', W', heads)
      ──per-code embedding (code_dim 4), flattened per frame, Linear──► (B, T, hidden)
      ──Conv1d k3 over time → GELU → GRU──► (B, T, hidden) ──mean over time──► (B, hidden)
      ──Linear──► mean (B, style_dim), log-variance (B, style_dim)

It sees whole frames of codes, so it can pick up what stays fixed over a clip and is not in the
audio or the episode label (camera angle, zoom, overlays); the KL term to N(0, I) (with free
bits, nwt.train.prior) keeps it from carrying the frame-by-frame content.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

REF_CODE_DIM = 4  # per-code embedding width: the frame vector is positions × heads × this


class StyleEncoder(nn.Module):
    def __init__(self, code_heads: int, num_codes: int, positions: int, style_dim: int, hidden: int):
        super().__init__()
        self.code_heads, self.num_codes = code_heads, num_codes
        self.embed = nn.Embedding(code_heads * num_codes, REF_CODE_DIM)
        self.register_buffer("head_offset", torch.arange(code_heads) * num_codes, persistent=False)
        self.frame = nn.Linear(positions * code_heads * REF_CODE_DIM, hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2 * style_dim)
        nn.init.zeros_(self.out.bias)
        nn.init.normal_(self.out.weight, std=0.01)  # start near the prior: mean 0, variance 1

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H', W', heads) codes → mean, log-variance, (B, style_dim) each."""
        e = self.embed(codes.long() + self.head_offset)  # (B, T, H', W', heads, 4)
        x = self.frame(rearrange(e, "b t h w k e -> b t (h w k e)"))  # (B, T, hidden)
        x = torch.nn.functional.gelu(self.conv(rearrange(x, "b t c -> b c t")))
        x, _ = self.gru(rearrange(x, "b c t -> b t c"))  # (B, T, hidden)
        mu, logvar = self.out(x.mean(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)
