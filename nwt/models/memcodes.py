"""Memcodes: a discrete bottleneck by attention over learned codebooks (NWT, Mama et al. 2021).

After lucidrains' NWT-pytorch `Memcodes(dim, num_codes, heads, temperature)`: the input at each
position is split into `heads` queries; head h attends over its own codebook of `num_codes`
learned codes, whose keys and values are linear maps of the codes. Training picks one code per
head with a straight-through Gumbel-softmax (hard one-hot forward, soft gradient); eval picks the
argmax. The output is the chosen values, heads merged and projected back to `dim`. There is no
commitment or codebook loss: the codes learn through the values and keys.

Indices (B, N, heads) decode exactly: the eval forward *is* `decode_indices(argmax)`.

Codebook collapse (few codes used) is the known failure. Two counter-measures:
- usage counting: every training forward adds the noise-free argmax choices to `code_usage`,
  so `usage_stats()` and `restart_dead_codes()` see what eval would pick;
- dead-code restart: `restart_dead_codes()` (called by the trainer every K steps) re-initialises
  codes used less than a fraction of the average by splitting live codes: for each dead code a
  random recent encoder query is drawn, and the dead code becomes a slightly perturbed copy of
  the code that query picks (so busy codes are split in proportion to their use). A copy has
  the same key and value, so decoding does not jump; the Gumbel noise shares the queries
  between the twins and their gradients pull them apart. (Placing a restarted code's key on the
  query instead gives it a random value, and mass restarts of that kind undid training in a
  calibration run.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Memcodes(nn.Module):
    def __init__(self, dim: int, num_codes: int, heads: int, temperature: float, logit_scale: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.num_codes, self.heads, self.temperature = dim, num_codes, heads, temperature
        self.logit_scale = logit_scale
        d = dim // heads
        self.head_dim = d
        self.scale = d**-0.5
        self.codes = nn.Parameter(torch.randn(heads, num_codes, d))  # (h, K, d)
        # per-head linear maps code → key and code → value (weights (h, d, d), biases (h, d))
        self.k_weight = nn.Parameter(torch.randn(heads, d, d) * d**-0.5)
        self.k_bias = nn.Parameter(torch.zeros(heads, d))
        self.v_weight = nn.Parameter(torch.randn(heads, d, d) * d**-0.5)
        self.v_bias = nn.Parameter(torch.zeros(heads, d))
        self.to_q = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        # noise-free argmax counts since the last restart check (persistent: resume is exact)
        self.register_buffer("code_usage", torch.zeros(heads, num_codes))
        self._last_queries: torch.Tensor | None = None  # (h, M, d) detached, for restarts

    # ----------------------------------------------------------------- keys and values
    def keys(self) -> torch.Tensor:
        return torch.einsum("hkd,hde->hke", self.codes, self.k_weight) + self.k_bias[:, None]  # (h, K, d)

    def values(self) -> torch.Tensor:
        return torch.einsum("hkd,hde->hke", self.codes, self.v_weight) + self.v_bias[:, None]  # (h, K, d)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) → attention logits (B, h, N, K), in fp32.

        `logit_scale` > 0: cosine similarity × logit_scale (queries and keys l2-normalised, so
        no code wins by its norm alone: the usual cure for codebook collapse); 0: scaled dot
        product as in lucidrains' Memcodes.
        """
        q = rearrange(self.to_q(x).float(), "b n (h d) -> b h n d", h=self.heads)  # (B, h, N, d)
        k = self.keys().float()  # (h, K, d)
        if self.logit_scale > 0:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if self.training:
            self._last_queries = rearrange(q.detach(), "b h n d -> h (b n) d")
        scale = self.logit_scale if self.logit_scale > 0 else self.scale
        return torch.einsum("bhnd,hkd->bhnk", q, k) * scale  # (B, h, N, K)

    # ----------------------------------------------------------------- forward / decode
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, dim) → (out (B, N, dim), indices (B, N, heads) long)."""
        logits = self.logits(x)  # (B, h, N, K)
        clean = logits.argmax(dim=-1)  # (B, h, N) what eval would pick
        if not self.training:
            indices = rearrange(clean, "b h n -> b n h")
            return self.decode_indices(indices), indices
        with torch.no_grad():
            self.code_usage += F.one_hot(clean, self.num_codes).sum(dim=(0, 2)).float()
        # straight-through Gumbel-softmax: hard one-hot forward, soft gradient. The temperature
        # divides the logits before the noise, so it sets how random the hard sample is
        # (F.gumbel_softmax's own tau would only soften the gradient).
        attn = F.gumbel_softmax(logits / self.temperature, tau=1.0, hard=True, dim=-1)  # (B, h, N, K)
        indices = rearrange(attn.detach().argmax(dim=-1), "b h n -> b n h")
        out = torch.einsum("bhnk,hkd->bhnd", attn, self.values().float())  # (B, h, N, d)
        out = rearrange(out, "b h n d -> b n (h d)").to(x.dtype)
        return self.to_out(out), indices

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, N, heads) long → out (B, N, dim); equals the eval forward exactly."""
        values = self.values().float()  # (h, K, d)
        heads = torch.arange(self.heads, device=indices.device)
        out = values[heads, indices.long()]  # (B, N, h, d)
        return self.to_out(rearrange(out, "b n h d -> b n (h d)"))

    # ----------------------------------------------------------------- usage and restarts
    @staticmethod
    def usage_from_counts(counts: torch.Tensor) -> dict[str, list[float]]:
        """counts (h, K) → per-head perplexity (exp entropy) and fraction of codes used."""
        p = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)
        return {
            "perplexity": entropy.exp().tolist(),
            "used_fraction": (counts > 0).float().mean(dim=-1).tolist(),
        }

    def usage_stats(self) -> dict[str, list[float]]:
        """Per head, from the argmax counts gathered since the last restart check."""
        return self.usage_from_counts(self.code_usage)

    @torch.no_grad()
    def restart_dead_codes(self, min_usage_fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Re-initialise codes used < `min_usage_fraction` × the mean count, from recent queries.

        Returns the (h, K) bool mask of restarted codes and resets `code_usage`. In DDP the
        caller all-reduces `code_usage` before and broadcasts `codes` from rank 0 after.
        """
        dead = self.code_usage < min_usage_fraction * self.code_usage.mean(dim=-1, keepdim=True)
        if self._last_queries is not None and dead.any():
            queries = self._last_queries  # (h, M, d), as compared with the keys
            keys = self.keys().float()
            if self.logit_scale > 0:
                keys = F.normalize(keys, dim=-1)
            for h in range(self.heads):
                n_dead = int(dead[h].sum())
                if n_dead == 0:
                    continue
                pick = torch.randint(queries.shape[1], (n_dead,), generator=generator)
                sim = queries[h, pick.to(queries.device)] @ keys[h].T  # (n_dead, K)
                winners = sim.masked_fill(dead[h], float("-inf")).argmax(dim=-1)  # live codes only
                base = self.codes[h, winners]  # split the codes those queries pick: decoding is unchanged
                noise = torch.randn(base.shape, generator=generator).to(base)
                self.codes[h, dead[h]] = base + 0.02 * self.codes[h].std() * noise
        self.code_usage.zero_()
        return dead
