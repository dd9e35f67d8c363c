"""dVAE-Adv: a per-frame convolutional autoencoder with a Memcodes bottleneck (NWT).

A 256×224 RGB frame in [-1, 1] becomes a (H', W', heads) grid of discrete codes: 16×14 with
`downsample=16` (the paper's Mem16) or 8×7 with 32 (Mem8). The decoder maps codes back to the
frame, conditioned on an episode embedding by FiLM (swapping it changes the look, not the
content); row `n_episodes` of the table is `<unk>`, for episodes the model never saw.

CPU-cheap by design (docs/design.md): the full-resolution work is one space-to-depth
(`pixel_unshuffle` by `stem`) in and one `pixel_shuffle` out; all convolutions run at ≤ 1/stem
resolution, with the width doubling at each stride-2 stage (capped at `max_mult`). With
`norm="channel"` every normalisation is per pixel, so the network trained on random windows
(nwt.train.dvae, patch training) is the one that runs on whole frames; `norm="group"`
(GroupNorm) is what checkpoints without the field were made with.

`DVAEDims` is saved (`to_dict()`) in every checkpoint, and `DVAE(DVAEDims.from_checkpoint(d))`
rebuilds the model, from older layouts too (`migrate_dvae_dims`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nwt.constants import CROP_H, CROP_W
from nwt.models.dims import migrate_dims
from nwt.models.memcodes import Memcodes

# what checkpoints written before a field existed were built with (see migrate_dvae_dims)
LEGACY_DVAE_DIMS = {"norm": "group", "stem": 4, "height": CROP_H, "width": CROP_W}


@dataclass
class DVAEDims:
    """Every field is a `train_dvae` params key (`use_episode` ← `episode_embedding`) or comes from
    the data: `n_episodes` (known episodes), `height` × `width` (the frames, CROP_H × CROP_W)."""

    channels: int  # width at the stem's resolution (after space-to-depth by `stem`)
    max_mult: int  # the width doubles per stride-2 stage up to channels × max_mult
    blocks: int  # residual blocks per resolution stage (encoder and decoder each)
    downsample: int  # 16 → 16×14 grid (Mem16), 32 → 8×7 (Mem8) for 256×224 input
    num_codes: int  # codebook size per head
    heads: int  # Memcodes heads: codes per position
    code_dim: int  # Memcodes width (split across heads)
    temperature: float  # Gumbel-softmax sampling temperature in training
    logit_scale: float  # Memcodes cosine-similarity logit scale (0: scaled dot product)
    n_episodes: int  # known episodes; row n_episodes of the table is <unk>
    episode_dim: int  # episode embedding width
    use_episode: bool  # FiLM-condition the decoder on the episode
    stem: int  # space-to-depth factor in (and depth-to-space out): convolutions run at ≤ 1/stem
    norm: str  # group (GroupNorm, statistics over the image) | channel (per pixel: crop-invariant)
    height: int  # frame height (pixels)
    width: int  # frame width

    def __post_init__(self) -> None:
        if self.norm not in ("group", "channel"):
            raise ValueError(f"norm must be group or channel, got {self.norm!r}")
        if self.downsample not in (16, 32):
            raise ValueError(f"downsample must be 16 or 32, got {self.downsample}")
        if self.stem not in (2, 4, 8):
            raise ValueError(f"stem must be 2, 4 or 8, got {self.stem}")
        if self.height % self.downsample or self.width % self.downsample:
            raise ValueError(f"{self.height}×{self.width} is not divisible by {self.downsample}")

    def to_dict(self) -> dict:
        """What a checkpoint saves (plain types, weights_only-loadable)."""
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> DVAEDims:
        """A checkpoint's dims dict, of this layout or an older one (`migrate_dvae_dims`)."""
        return cls(**migrate_dvae_dims(saved))

    @property
    def n_stages(self) -> int:
        return int(math.log2(self.downsample // self.stem)) + 1  # stem 4: 1/4, 1/8, 1/16 (, 1/32)

    def stage_channels(self, i: int) -> int:
        return self.channels * min(2**i, self.max_mult)

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // self.downsample, self.width // self.downsample

    @property
    def unk_index(self) -> int:
        return self.n_episodes

    @property
    def bits_per_frame(self) -> float:
        h, w = self.grid
        return h * w * self.heads * math.log2(self.num_codes)


def migrate_dvae_dims(saved: dict) -> dict:
    """A saved DVAEDims dict → keyword arguments of today's DVAEDims. Checkpoints written before
    `norm` / `stem` existed were GroupNorm / stem 4 models; before `height` / `width` were saved,
    every frame was CROP_H × CROP_W. Unknown keys are an error."""
    return migrate_dims(saved, DVAEDims, added=LEGACY_DVAE_DIMS, fixed={})


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each pixel: unlike GroupNorm its statistics do not depend on the
    rest of the image, so a model trained on random crops behaves the same on whole frames."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        # layer_norm over the last dim of the channels-last view: ≈2× faster than mean/var by hand
        # on the CPU (and free of a copy when x is already channels_last)
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight.view(-1), self.bias.view(-1), self.eps)
        return y.permute(0, 3, 1, 2)


def make_norm(kind: str, channels: int) -> nn.Module:
    return ChannelNorm(channels) if kind == "channel" else nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """x + conv(act(conv(act(norm(x))))), optional FiLM after the norm; last conv starts at zero."""

    def __init__(self, channels: int, cond_dim: int, norm: str):
        super().__init__()
        self.norm = make_norm(norm, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.film = nn.Linear(cond_dim, 2 * channels) if cond_dim else None
        if self.film is not None:  # identity modulation at init
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x)  # (B, C, H, W)
        if self.film is not None and cond is not None:
            gamma, beta = rearrange(self.film(cond), "b (two c) -> two b c 1 1", two=2)
            h = h * (1 + gamma) + beta
        h = self.conv2(F.silu(self.conv1(F.silu(h))))
        return x + h


class Encoder(nn.Module):
    def __init__(self, dims: DVAEDims):
        super().__init__()
        c0 = dims.stage_channels(0)
        self.factor = dims.stem
        self.stem = nn.Conv2d(3 * dims.stem**2, c0, 3, padding=1)
        self.stages = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i in range(dims.n_stages):
            c = dims.stage_channels(i)
            self.stages.append(nn.Sequential(*[ResBlock(c, 0, dims.norm) for _ in range(dims.blocks)]))
            if i + 1 < dims.n_stages:
                self.downs.append(nn.Conv2d(c, dims.stage_channels(i + 1), 3, stride=2, padding=1))
        c_last = dims.stage_channels(dims.n_stages - 1)
        self.out_norm = make_norm(dims.norm, c_last)
        self.to_code = nn.Conv2d(c_last, dims.code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(x, self.factor)  # (B, 3·s², H/s, W/s), s = dims.stem
        x = self.stem(x)  # (B, C, H/s, W/s)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.downs):
                x = self.downs[i](x)  # (B, C', H/(s·2^(i+1)), W/(s·2^(i+1)))
        return self.to_code(F.silu(self.out_norm(x)))  # (B, code_dim, H', W')


class Upsample(nn.Module):
    """×2 by a 1×1 conv to 4·c_out channels and depth-to-space (= a 2×2 stride-2 transposed conv).

    9× cheaper than nearest-upsampling + 3×3 conv at the higher resolution; the residual
    blocks that follow mix the neighbourhood.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, 4 * c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)  # (B, c_out, 2H, 2W)


class Decoder(nn.Module):
    def __init__(self, dims: DVAEDims):
        super().__init__()
        cond = dims.episode_dim if dims.use_episode else 0
        c_last = dims.stage_channels(dims.n_stages - 1)
        self.from_code = nn.Conv2d(dims.code_dim, c_last, 3, padding=1)
        self.stages = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in reversed(range(dims.n_stages)):
            c = dims.stage_channels(i)
            self.stages.append(nn.ModuleList([ResBlock(c, cond, dims.norm) for _ in range(dims.blocks)]))
            if i > 0:
                self.ups.append(Upsample(c, dims.stage_channels(i - 1)))
        c0 = dims.stage_channels(0)
        self.out_norm = make_norm(dims.norm, c0)
        self.factor = dims.stem
        self.to_pixels = nn.Conv2d(c0, 3 * dims.stem**2, 3, padding=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self.from_code(z)  # (B, C_last, H', W')
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x, cond)
            if i < len(self.ups):
                x = self.ups[i](x)  # (B, C', 2H, 2W)
        x = self.to_pixels(F.silu(self.out_norm(x)))  # (B, 3·s², H/s, W/s)
        return F.pixel_shuffle(x, self.factor)  # (B, 3, H, W)


class DVAE(nn.Module):
    def __init__(self, dims: DVAEDims):
        super().__init__()
        self.dims = dims
        self.encoder = Encoder(dims)
        self.memcodes = Memcodes(dims.code_dim, dims.num_codes, dims.heads, dims.temperature, dims.logit_scale)
        self.decoder = Decoder(dims)
        # rows 0..n_episodes-1: known episodes; row n_episodes: <unk>
        self.episode_embedding = nn.Embedding(dims.n_episodes + 1, dims.episode_dim) if dims.use_episode else None

    def _cond(self, episode: torch.Tensor | None, batch: int, device) -> torch.Tensor | None:
        if self.episode_embedding is None:
            return None
        if episode is None:
            episode = torch.full((batch,), self.dims.unk_index, dtype=torch.long, device=device)
        return self.episode_embedding(episode.long())  # (B, episode_dim)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) → (quantised features (B, code_dim, H', W'), indices (B, H', W', heads))."""
        z = self.encoder(x)  # (B, code_dim, H', W')
        h, w = z.shape[-2:]
        out, indices = self.memcodes(rearrange(z, "b c h w -> b (h w) c"))  # (B, N, code_dim), (B, N, heads)
        out = rearrange(out, "b (h w) c -> b c h w", h=h, w=w)
        return out, rearrange(indices, "b (h w) k -> b h w k", h=h, w=w)

    @torch.no_grad()
    def quantize_argmax(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`quantize` with eval's argmax codes (no Gumbel noise) and no graph, whatever the mode."""
        was_training = self.memcodes.training
        self.memcodes.eval()
        try:
            return self.quantize(x)
        finally:
            self.memcodes.train(was_training)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 256, 224) float in [-1, 1] → indices (B, H', W', heads) long (argmax codes)."""
        return self.quantize_argmax(x)[1]

    def decode_features(self, z: torch.Tensor, episode: torch.Tensor | None = None) -> torch.Tensor:
        """Quantised features (B, code_dim, H', W'), episode (B,) long (None → <unk>) → (B, 3, H, W)."""
        return self.decoder(z, self._cond(episode, z.shape[0], z.device))

    def decode(self, indices: torch.Tensor, episode: torch.Tensor | None = None) -> torch.Tensor:
        """indices (B, H', W', heads), episode (B,) long (None → <unk>) → (B, 3, 256, 224)."""
        b, h, w, _ = indices.shape
        out = self.memcodes.decode_indices(rearrange(indices, "b h w k -> b (h w) k"))  # (B, N, code_dim)
        return self.decode_features(rearrange(out, "b (h w) c -> b c h w", h=h, w=w), episode)

    def forward(self, x: torch.Tensor, episode: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """x (B, 3, H, W) in [-1, 1], episode (B,) → (recon (B, 3, H, W), indices (B, H', W', heads), stats)."""
        z, indices = self.quantize(x)
        recon = self.decoder(z, self._cond(episode, x.shape[0], x.device))  # (B, 3, H, W)
        with torch.no_grad():
            counts = torch.stack([torch.bincount(indices[..., k].flatten(), minlength=self.dims.num_codes)
                                  for k in range(self.dims.heads)])
            usage = Memcodes.usage_from_counts(counts.float())
        stats = {"perplexity": sum(usage["perplexity"]) / self.dims.heads}
        return recon, indices, stats
