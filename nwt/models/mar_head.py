"""MAR head of the prior (`prior.mode: mar`, memcode-autoregressive): a frame's codes one by one.

FAR's spatial head predicts every code of frame t at once from the frame state h_t, so the codes
of one frame are independent of each other given h_t. The MAR head keeps everything before it
(audio encoder, causal frame transformer, previous-frame skip) and replaces only that head by a
small causal transformer over the frame's N = H'·W'·heads codes in raster order — rows, then
columns, then memcode heads, so the heads of one position are neighbours. Code j of frame t is
predicted from h_t, frame t-1 and the codes < j of frame t:

    h (B, T, D) ──Linear──► (B, T, P, S) + per-position vector ──Linear──► (B, T, P, E)
      repeated for the heads of each position                          ──► cond (B, T, N, E)
    input of token j = cond_j + pos_j + skip_j + embed(code j-1 of the same frame)
      (j = 0: a learned start row; skip_j: frame t-1's code at token j, zero at t = 0 or
       when the previous frame is dropped — copying still regions costs no capacity, as in FAR)
    ──`layers` causal blocks (RoPE over j), one sequence per frame (B·T of them)──► LayerNorm
    ──per-memcode-head output layer──► logits (B, T, H', W', heads, K)

The frame state enters every token through a per-position projection (as FAR's head reads it)
rather than as one prefix token: a single E-wide vector would have to carry the whole frame
through the first attention step, and with this choice MAR differs from FAR only by the
autoregression inside the frame — the quality comparison the mode exists for.

Training is teacher-forced in one batched pass (each frame's sequence reads its own true codes,
shifted by one). Sampling runs N steps per frame, one token each, with a KV cache per block;
`sample(..., use_cache=False)` recomputes the whole prefix at every step (the reference the
tests compare the cache against).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn

from nwt.models.audio_encoder import MLP_RATIO, Block, rope_angles


class MARHead(nn.Module):
    def __init__(self, frame_dim: int, grid_h: int, grid_w: int, code_heads: int, num_codes: int, cond_dim: int,
                 dim: int, layers: int, heads: int, logit_scale: float, mlp_ratio: int = MLP_RATIO):
        super().__init__()
        self.grid_h, self.grid_w, self.code_heads, self.num_codes = grid_h, grid_w, code_heads, num_codes
        self.positions = P = grid_h * grid_w
        self.tokens = N = P * code_heads
        self.dim, self.logit_scale = dim, logit_scale
        K = num_codes
        # frame state → one conditioning vector per position (shared by that position's heads)
        self.cond_in = nn.Linear(frame_dim, P * cond_dim)
        self.cond_pos = nn.Parameter(torch.randn(P, cond_dim) * 0.02)
        self.cond_proj = nn.Linear(cond_dim, dim)
        self.pos = nn.Parameter(torch.randn(N, dim) * 0.02)  # absolute token index (position and head)
        # vocabulary: code + head × K (each memcode head has its own codebook); last row = frame start
        self.tok_embed = nn.Embedding(code_heads * K + 1, dim)
        self.skip_embed = nn.Embedding(code_heads * K, dim)
        nn.init.normal_(self.skip_embed.weight, std=0.02)
        self.register_buffer("head_offset", torch.arange(code_heads) * K, persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        # one output layer per memcode head: token j predicts a code of head j % code_heads
        self.out_w = nn.Parameter(torch.randn(code_heads, dim, K) * 0.02)
        self.out_b = nn.Parameter(torch.zeros(code_heads, K))
        cos, sin = rope_angles(torch.arange(N), dim // heads)  # (N, hd/2) each
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    @property
    def start_row(self) -> int:
        return self.code_heads * self.num_codes

    def rows(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., H', W', heads) codes → (..., N) vocabulary rows in raster order."""
        return rearrange(codes.long() + self.head_offset, "... h w k -> ... (h w k)")

    def embed_skip(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, H', W', heads) previous-frame codes → (B, T, N, E) per-token skip input."""
        return self.skip_embed(self.rows(codes))

    def condition(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame states + (B, T, N, E) skip → (B, T, N, E): token inputs but the previous code."""
        c = rearrange(self.cond_in(h), "b t (p s) -> b t p s", p=self.positions) + self.cond_pos
        c = self.cond_proj(c).repeat_interleave(self.code_heads, dim=2)  # (B, T, N, E): token j ↔ position j // heads
        return c + self.pos + skip

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(S, n, E) token inputs of n ≤ N first tokens → (S, n, E) normed states, causal."""
        n = x.shape[1]
        for block in self.blocks:
            x = block(x, self.cos[:n], self.sin[:n], is_causal=True)
        return self.norm(x)

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        """(S, N, E) states → (S, P, heads, K) logits."""
        z = rearrange(z, "s (p k) e -> s p k e", k=self.code_heads)
        return (torch.einsum("spke,kec->spkc", z, self.out_w.to(z.dtype)) + self.out_b.to(z.dtype)) * self.logit_scale

    def forward(self, h: torch.Tensor, skip: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: frame states (B, T, D), skip (B, T, N, E), the frames' own codes
        (B, T, H', W', heads) → logits (B, T, H', W', heads, K); logits of code j depend on
        codes < j of the same frame only."""
        B, T = codes.shape[:2]
        rows = self.rows(codes)  # (B, T, N)
        inp = torch.cat([torch.full_like(rows[..., :1], self.start_row), rows[..., :-1]], dim=-1)  # shifted by one
        x = self.condition(h, skip) + self.tok_embed(inp)  # (B, T, N, E)
        z = self._blocks(rearrange(x, "b t n e -> (b t) n e"))  # (B·T, N, E)
        return rearrange(self._logits(z), "(b t) (h w) k c -> b t h w k c", b=B, h=self.grid_h)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, skip: torch.Tensor, draw: Callable[[torch.Tensor], torch.Tensor],
               use_cache: bool = True) -> torch.Tensor:
        """One frame: states (R, D), skip (1 or R, N, E) → codes (H', W', heads) long, token by
        token. The R rows (1, or 2 under guidance: with and without the audio) share the drawn
        codes; `draw` maps their (R, K) logits to (1,) indices (guidance, temperature, top-k/p
        and the seeded generator are the caller's). With `use_cache` each step runs one token
        through the blocks and keeps their keys/values; without, it reruns the whole prefix
        (same result, O(N²))."""
        base = self.condition(h[:, None], skip[:, None])[:, 0]  # (R, N, E)
        N, H = self.tokens, self.code_heads
        rows = torch.empty(1, N + 1, dtype=torch.long, device=h.device)  # input rows: start, then sampled
        rows[0, 0] = self.start_row
        caches = [dict() for _ in self.blocks]
        for j in range(N):
            if use_cache:
                x = base[:, j : j + 1] + self.tok_embed(rows[:, j : j + 1])  # (R, 1, E)
                cos, sin = self.cos[j : j + 1], self.sin[j : j + 1]
                for block, cache in zip(self.blocks, caches):
                    x = block(x, cos, sin, cache=cache)
                z = self.norm(x)[:, 0]  # (R, E)
            else:
                z = self._blocks(base[:, : j + 1] + self.tok_embed(rows[:, : j + 1]))[:, -1]
            k = j % H
            logits = (z @ self.out_w[k].to(z.dtype) + self.out_b[k].to(z.dtype)) * self.logit_scale  # (R, K)
            code = draw(logits)  # (1,)
            rows[0, j + 1] = code[0] + k * self.num_codes
        codes = rows[0, 1:] - self.head_offset.repeat(self.positions)  # (N,)
        return codes.view(self.grid_h, self.grid_w, H)
