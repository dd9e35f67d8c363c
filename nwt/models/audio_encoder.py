"""Audio encoder of the prior: log-mel (4 mel frames per video frame) → one vector per video frame.

    mel (B, 4T, n_mels)
      → Conv1d k3 (mel rate) → GELU → Conv1d k4 stride 4 (→ video rate) → GELU → Conv1d k3
      → LayerNorm (per frame) → `layers` non-causal transformer blocks with local attention (±`window` frames, RoPE)
      → (B, T, dim)

The attention is banded (each frame sees `window` frames either side), so the encoder's
receptive field is finite: `receptive_frames()` frames either side. That lets the sampler
encode hours of audio in chunks with that much overlap and get exactly what one long pass
would give (`encode_chunked`), with bounded memory. Positions are rotary (relative), so a
chunk's offset does not matter.

The LayerNorm after the convolutions matters: without it the convolutions' small,
time-varying output is swamped by the constant biases of the transformer blocks, the prior
finds the audio uninformative early, and training ends with an encoder that says the same
thing every frame (docs/experiments.md has the measurement). Per frame, it keeps the encoding chunk-invariant.

The transformer block, RoPE and banded-mask helpers here are shared with the prior's frame
transformer (nwt/models/prior.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nwt.constants import MELS_PER_FRAME

MLP_RATIO = 4  # transformer MLP width / model width (frame transformer, audio encoder, MAR head)

# ---------------------------------------------------------------- shared transformer parts
def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of rotary angles, (T, head_dim/2) each, for integer positions (T,)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    ang = positions.to(torch.float32)[:, None] * inv_freq[None]  # (T, hd/2)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :hd/2], x[..., hd/2:]); x (B, nh, T, hd), cos/sin (T, hd/2)."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    x1, x2 = xf.chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


def band_mask(n_q: int, n_k: int, before: int, after: int, q_offset: int = 0, device=None) -> torch.Tensor:
    """Bool (n_q, n_k) mask, True = may attend: key j is visible to query i (at absolute
    position q_offset + i, keys at 0..n_k-1) when -after ≤ (q - j) ≤ before."""
    q = torch.arange(n_q, device=device)[:, None] + q_offset
    k = torch.arange(n_k, device=device)[None, :]
    d = q - k
    return (d <= before) & (d >= -after)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim {dim} must split into {heads} heads of even size")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D)
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None = None,  # (T, Tk) bool, True = attend
        is_causal: bool = False,
        cache: dict | None = None,  # {"k", "v"} (B, nh, n, hd) of earlier steps, rotated
        cos_k: torch.Tensor | None = None,
        sin_k: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
        return self.out(rearrange(y, "b h t d -> b t (h d)"))


class Block(nn.Module):
    """Pre-norm transformer block (attention + GELU MLP)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = MLP_RATIO):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, cos, sin, mask=None, is_causal=False, cache=None):
        x = x + self.attn(self.norm1(x), cos, sin, mask=mask, is_causal=is_causal, cache=cache)
        return x + self.mlp(self.norm2(x))


# ---------------------------------------------------------------- audio encoder
class AudioEncoder(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, window: int, n_mels: int, mlp_ratio: int = MLP_RATIO):
        super().__init__()
        self.dim, self.heads, self.window = dim, heads, window
        self.conv_mel = nn.Conv1d(n_mels, dim, kernel_size=3, padding=1)  # mel rate, ±1 mel frame
        self.conv_down = nn.Conv1d(dim, dim, kernel_size=MELS_PER_FRAME, stride=MELS_PER_FRAME)  # → video rate
        self.conv_frame = nn.Conv1d(dim, dim, kernel_size=3, padding=1)  # ±1 video frame
        self.stem_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def receptive_frames(self) -> int:
        """Video frames either side that can influence one output frame."""
        return 2 + len(self.blocks) * self.window  # conv_mel+conv_down ≤ 1 frame, conv_frame 1, attention

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 4T, n_mels) → (B, T, dim)."""
        if mel.shape[1] % MELS_PER_FRAME:
            raise ValueError(f"mel length {mel.shape[1]} is not a multiple of {MELS_PER_FRAME}")
        x = rearrange(mel, "b m c -> b c m")
        x = F.gelu(self.conv_mel(x))  # (B, D, 4T)
        x = F.gelu(self.conv_down(x))  # (B, D, T)
        x = self.stem_norm(rearrange(self.conv_frame(x), "b d t -> b t d"))  # (B, T, D)
        t = x.shape[1]
        cos, sin = rope_angles(torch.arange(t, device=x.device), self.dim // self.heads)
        mask = band_mask(t, t, self.window, self.window, device=x.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask=mask)
        return self.norm(x)

    @torch.no_grad()
    def encode_chunked(self, mel: torch.Tensor, chunk_frames: int = 256) -> torch.Tensor:
        """Same result as forward(mel) (to float rounding) with memory bounded by the chunk:
        each chunk is encoded with `receptive_frames()` of real context either side."""
        t = mel.shape[1] // MELS_PER_FRAME
        if t <= chunk_frames:
            return self(mel)
        margin = self.receptive_frames()
        outs = []
        for start in range(0, t, chunk_frames):
            stop = min(start + chunk_frames, t)
            lo, hi = max(0, start - margin), min(t, stop + margin)
            enc = self(mel[:, lo * MELS_PER_FRAME : hi * MELS_PER_FRAME])
            outs.append(enc[:, start - lo : stop - lo])
        return torch.cat(outs, dim=1)
