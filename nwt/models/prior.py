"""The audio-conditioned prior over dVAE memcodes: FAR (one whole frame per step) or MAR.

    mel (B, 4T, 80) ──AudioEncoder──► audio (B, T, D) ─┐  (non-causal, ±audio_window frames/layer)
    codes (B, T, H', W', heads)                       │
      shifted by one frame: frame t sees frame t-1    │
      ──per-code embedding, flattened per position──► prev (B, T, D)   (t=0: learned `start`)
    episode (B,) ──Embedding(n_episodes + 1)────────► ep (B, 1, D)     (last row = <unk>)
    x_t = prev_t + audio_t + ep           (the audio of frame t is *added* to step t's input)
      ──causal frame transformer (RoPE, attention to the last `context_frames` frames)──► h (B, T, D)
      ──spatial head: per-position projection + position embedding
        + skip: embedding of frame t-1's code at the same position + MLP──►
    logits (B, T, H', W', heads, num_codes)   all codes of frame t in parallel

`mode="mar"` (memcode-autoregressive) keeps all of the above but the spatial head, which it
replaces by a MAR head (nwt/models/mar_head.py): a small causal transformer over the frame's
H'·W'·heads codes in raster order, conditioned per position on h_t and on frame t-1, so that
each code also sees the codes before it in its own frame. Same logits shape, same loss,
teacher-forced in one pass; sampling runs one code per step inside each frame (KV-cached).

Guards against "copy the previous frame and ignore the audio" (training only, arguments of
`forward`): `prev_frame_dropout` replaces a whole previous-frame input by a learned `mask`
vector (and zeroes the per-position skip), `code_noise` replaces single previous-frame codes by
random ones, `episode_dropout` swaps the episode for `<unk>` (which also trains the `<unk>` row
used for unseen looks).

The frame transformer's attention is limited to `context_frames` frames (a sliding window, as
Mistral's), in training and in sampling alike, so the KV-cached sampler with a bounded cache
computes exactly what the uncached `forward` computes, however long the audio.

Style (unlabelled Gaussian latent, after Hsu et al. 2019; `style_dim > 0`): a reference
encoder (nwt/models/style.py) reads a clip's codes and gives the mean and log-variance of a
`style_dim` Gaussian; in training z is drawn with the reparameterisation trick from the
encoding of the training window itself and `style_proj(z)` is added to every frame input (as
the episode is); `forward(..., style="posterior", return_aux=True)` also returns the KL to
N(0, I). At sampling time z comes from N(0, I) (a seed), from a reference clip's codes (the
encoder's mean), or is 0 (the prior's mean) by default.

Classifier-free guidance by the audio (`null_audio`; Ho & Salimans 2022, as MusicGen uses it
for text): `forward(..., audio_dropout=p)` replaces the audio encoding of a share p of the
training windows by a learned `null_audio` vector, so the one network also learns what it would
draw without the speech. `sample_iter(..., guidance=g)` runs the frame transformer and head on
two rows that share the drawn codes (with the audio, with `null_audio`) and draws from
uncond + g × (cond − uncond) logits: g = 1 is the prior as trained, g > 1 pushes the codes
towards what the speech explains. Why: the mouth is a few of 448 codes a frame and the prior's
own sample follows the audio only loosely; the difference between the two predictions is
exactly the part the audio decides. The sync loss always pairs frames with the real audio.

Sampling streams: `sample_iter` yields one frame of codes at a time, reading the mel through a
callable and encoding the audio in chunks (with the encoder's receptive field as overlap), so
memory does not grow with the audio's length; `sample` collects it.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nwt.constants import MELS_PER_FRAME
from nwt.models.audio_encoder import MLP_RATIO, AudioEncoder, Block, band_mask, rope_angles
from nwt.models.dims import migrate_dims
from nwt.models.mar_head import MARHead
from nwt.models.style import StyleEncoder

MODES = ("far", "mar")


# what checkpoints written before a field existed were built with (see migrate_prior_dims)
LEGACY_PRIOR_DIMS = {"null_audio": False, "sync_dim": 0, "audio_skip": 0, "style_dim": 0, "style_hidden": 64,
                     "mar_layers": 2, "mar_dim": 64, "mar_heads": 2}
# former fields, now constants of the architecture: a checkpoint may carry them at these values
FIXED_PRIOR_DIMS = {"mlp_ratio": MLP_RATIO}


@dataclass
class PriorDims:
    """Every field is a `prior` params key or comes from the data: the code grid (`grid_h`,
    `grid_w`, `code_heads`, `num_codes`, from the tokens), `n_episodes`, `n_mels` (the token
    clips' mel bins) and `null_audio` (trained with prior.audio_dropout > 0)."""

    mode: str  # far (whole frame per step) | mar (one code per step inside a frame)
    layers: int  # frame transformer depth
    dim: int  # width of frame and audio transformers
    heads: int  # attention heads
    audio_layers: int  # non-causal transformer layers of the audio encoder
    audio_window: int  # audio attention: frames either side, per layer
    context_frames: int  # frame transformer attends to this many frames (itself included)
    grid_h: int  # code grid (from the token data)
    grid_w: int
    code_heads: int  # memcode heads per position (from the token data)
    num_codes: int  # codes per head (from the token data)
    n_episodes: int  # episode embedding has n_episodes + 1 rows, the last is <unk>
    n_mels: int  # mel bins of the audio input (from the token data)
    code_dim: int  # per-code embedding width before the per-position projection
    spatial_dim: int  # width of the per-position output head (MAR: of its per-position condition)
    # logits = logit_scale × (output layer): the same as a larger init and learning rate of the
    # output layer; lets a few-hundred-step CPU run reach sharp code distributions
    logit_scale: float
    sync_dim: int  # audio–frame contrastive embedding width (0: no sync loss)
    audio_skip: int  # FAR: rank of a direct audio → per-position head input (0: audio only via the frame transformer)
    style_dim: int  # unlabelled Gaussian style latent (0: none)
    null_audio: bool  # a learned "no audio" encoding (trained by forward's audio_dropout): guidance's uncond input
    style_hidden: int  # width of the reference encoder
    # MAR head (mode "mar" only): causal transformer over the H'·W'·heads codes of a frame
    mar_layers: int
    mar_dim: int
    mar_heads: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.context_frames < 1:
            raise ValueError("context_frames must be ≥ 1")
        if self.style_dim < 0 or self.sync_dim < 0:
            raise ValueError("style_dim and sync_dim must be ≥ 0")
        if self.mode == "mar" and (self.mar_layers < 1 or self.mar_dim % self.mar_heads
                                   or (self.mar_dim // self.mar_heads) % 2):
            raise ValueError("mar_layers must be ≥ 1 and mar_dim split into mar_heads heads of even size")

    @property
    def positions(self) -> int:
        return self.grid_h * self.grid_w

    def to_dict(self) -> dict:
        """What a checkpoint saves (plain types, weights_only-loadable)."""
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> PriorDims:
        """A checkpoint's dims dict, of this layout or an older one (`migrate_prior_dims`)."""
        return cls(**migrate_prior_dims(saved))


def migrate_prior_dims(saved: dict) -> dict:
    """A saved PriorDims dict → keyword arguments of today's PriorDims. Checkpoints written before
    a field existed were built without what it adds: no `null_audio` (False), no sync loss,
    audio skip or style latent (`sync_dim` / `audio_skip` / `style_dim` 0), a reference encoder
    64 wide (`style_hidden`), and the MAR head's 2 layers × 64 wide × 2 heads. A saved
    `mlp_ratio` must be MLP_RATIO (it is a constant now) and is dropped. Unknown keys are an error."""
    return migrate_dims(saved, PriorDims, added=LEGACY_PRIOR_DIMS, fixed=FIXED_PRIOR_DIMS)


class Guide:
    """Classifier-free guidance of a draw: logits rows (with the audio, without) → uncond + g ×
    (cond − uncond); g a scalar, per grid position (FAR: `scale` (H', W', 1, 1)) or per token of a
    MAR frame (`per_token`: `scale` (N,), `next_frame` before each frame's first token)."""

    def __init__(self, guidance: float, scale: torch.Tensor, per_token: bool = False):
        self.guided = guidance != 1.0
        self.scale, self.per_token = scale, per_token
        self._tokens = iter(range(0))

    def next_frame(self) -> None:
        self._tokens = iter(range(self.scale.numel()))

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:  # (1 or 2, ...) → (...)
        if not self.guided:
            return logits[0]
        g = self.scale[next(self._tokens)] if self.per_token else self.scale
        return logits[1] + g * (logits[0] - logits[1])


class Prior(nn.Module):
    def __init__(self, dims: PriorDims):
        super().__init__()
        self.dims = d = dims
        D, P, S, K = d.dim, d.positions, d.spatial_dim, d.num_codes
        self.audio = AudioEncoder(D, d.audio_layers, d.heads, d.audio_window, d.n_mels, MLP_RATIO)
        self.audio_proj = nn.Linear(D, D)
        # previous frame → one vector: code embedding per head, flattened over positions, projected
        self.code_embed = nn.Embedding(d.code_heads * K, d.code_dim)
        self.register_buffer("head_offset", torch.arange(d.code_heads) * K, persistent=False)
        self.frame_proj = nn.Linear(P * d.code_heads * d.code_dim, D)
        self.frame_norm = nn.LayerNorm(D)
        self.start = nn.Parameter(torch.randn(D) * 0.02)  # input of the first frame
        self.mask = nn.Parameter(torch.randn(D) * 0.02)  # input of a dropped previous frame
        self.episode = nn.Embedding(d.n_episodes + 1, D)
        if d.null_audio:
            self.null_audio = nn.Parameter(torch.randn(D) * 0.02)
        if d.style_dim > 0:
            self.style_encoder = StyleEncoder(d.code_heads, K, P, d.style_dim, d.style_hidden)
            self.style_proj = nn.Linear(d.style_dim, D)
        if d.sync_dim > 0:
            self.sync_audio = nn.Linear(D, d.sync_dim)
            self.sync_frame = nn.Linear(P * d.code_heads * d.code_dim, d.sync_dim)
            self.sync_logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.blocks = nn.ModuleList(Block(D, d.heads, MLP_RATIO) for _ in range(d.layers))
        self.norm = nn.LayerNorm(D)
        if d.mode == "mar":  # the only difference between the modes: the head after the frame transformer
            self.mar = MARHead(D, d.grid_h, d.grid_w, d.code_heads, K, S, d.mar_dim, d.mar_layers, d.mar_heads,
                               d.logit_scale, MLP_RATIO)
            return
        # FAR spatial head: frame vector → every position × head of the frame, in parallel
        self.spatial_in = nn.Linear(D, P * S)
        self.spatial_pos = nn.Parameter(torch.randn(P, S) * 0.02)
        # per-position skip from the previous frame's code at the same position (heads summed):
        # copying static regions needs no capacity of the frame vector, which is left for changes
        self.skip_embed = nn.Embedding(d.code_heads * K, S)
        nn.init.normal_(self.skip_embed.weight, std=0.02)
        if d.audio_skip > 0:
            # frame t's audio straight into every position's head input (low rank, zero at init):
            # the frame vector is shared by all 448 codes and the copy of the previous frame fills
            # it; the mouth's positions get a path of their own to what is being said
            self.audio_skip = nn.Sequential(nn.Linear(D, d.audio_skip), nn.Linear(d.audio_skip, P * S))
            nn.init.zeros_(self.audio_skip[1].weight)
            nn.init.zeros_(self.audio_skip[1].bias)
        self.spatial_mlp = nn.Sequential(
            nn.LayerNorm(S), nn.Linear(S, MLP_RATIO * S), nn.GELU(), nn.Linear(MLP_RATIO * S, S)
        )
        self.spatial_norm = nn.LayerNorm(S)
        self.spatial_out = nn.Linear(S, d.code_heads * K)
        nn.init.normal_(self.spatial_out.weight, std=0.02)
        nn.init.zeros_(self.spatial_out.bias)

    @torch.no_grad()
    def init_from_codebook(self, values: torch.Tensor) -> None:
        """Start the code embeddings (input, skip) and the FAR output layer from the dVAE's code
        values (heads, num_codes, d): each head's values, centred, projected on their leading
        principal directions and scaled to the layer's own init spread.

        Why: as plain symbols, the 256 codes of a head are unrelated until the data relates
        them, and the few thousand frames of a small corpus show each mouth code rarely. Codes
        whose patches look alike now start with alike embeddings and alike output rows, so what
        is learnt for one (a more open mouth when the audio is loud) carries to its neighbours."""
        d = self.dims
        values = torch.as_tensor(values, dtype=torch.float32)
        if tuple(values.shape[:2]) != (d.code_heads, d.num_codes):
            raise ValueError(f"codebook values {tuple(values.shape)} do not match "
                             f"{d.code_heads} heads × {d.num_codes} codes")

        coords = []  # per head (K, r): principal coordinates of its centred values, leading first
        for v in values:  # (K, dv)
            u, s, _ = torch.linalg.svd(v - v.mean(0), full_matrices=False)
            coords.append(u * s)

        def set_(param: torch.Tensor, std: float) -> None:  # param (heads·K, width)
            width = param.shape[1]
            rows = [F.pad(c[:, :width], (0, max(0, width - c.shape[1]))) for c in coords]  # (K, width) each
            param.copy_(torch.cat([r / r.std().clamp_min(1e-8) * std for r in rows]).to(param.dtype))

        set_(self.code_embed.weight, float(self.code_embed.weight.std()))
        if d.mode == "far":
            set_(self.skip_embed.weight, float(self.skip_embed.weight.std()))
            set_(self.spatial_out.weight, float(self.spatial_out.weight.std()))

    # ------------------------------------------------------------------ pieces
    @property
    def unk_episode(self) -> int:
        return self.dims.n_episodes

    def episode_row(self, episode_index: int | None) -> int:
        """Row of the episode embedding: unknown or out-of-range indices → <unk>."""
        if episode_index is None or not 0 <= int(episode_index) < self.dims.n_episodes:
            return self.unk_episode
        return int(episode_index)

    def code_embeddings(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, H', W', heads) codes → (B, T, H'·W'·heads·code_dim) their embeddings, flattened per frame."""
        e = self.code_embed(codes.long() + self.head_offset)  # (B, T, H', W', heads, code_dim)
        return rearrange(e, "b t h w k e -> b t (h w k e)")

    def embed_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, H', W', heads) codes → (B, T, D) one vector per frame."""
        return self.frame_norm(self.frame_proj(self.code_embeddings(codes)))

    def embed_skip(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, H', W', heads) codes → (B, T, P, spatial_dim) per-position skip input."""
        e = self.skip_embed(codes.long() + self.head_offset).sum(-2)  # (B, T, H', W', S)
        return rearrange(e, "b t h w s -> b t (h w) s")

    def skip_input(self, codes: torch.Tensor) -> torch.Tensor:
        """Previous-frame codes (B, T, H', W', heads) → the head's skip input: FAR (B, T, P, S)
        per position, MAR (B, T, N, mar_dim) per code."""
        return self.embed_skip(codes) if self.dims.mode == "far" else self.mar.embed_skip(codes)

    def head(self, h: torch.Tensor, skip: torch.Tensor, codes: torch.Tensor,
             audio: torch.Tensor | None = None) -> torch.Tensor:
        """Frame states (B, T, D) → logits (B, T, H', W', heads, K); MAR teacher-forces `codes`
        (the frames' own codes) inside each frame, FAR does not read them. `audio` (B, T, D):
        the audio encoding, for FAR's `audio_skip`."""
        return self.spatial(h, skip, audio) if self.dims.mode == "far" else self.mar(h, skip, codes)

    def spatial(self, h: torch.Tensor, skip: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) frame states + (B, T, P, S) previous-frame skip (+ (B, T, D) audio encoding
        with `audio_skip`) → (B, T, H', W', heads, num_codes) logits."""
        d = self.dims
        z = rearrange(self.spatial_in(h), "b t (p s) -> b t p s", p=d.positions) + self.spatial_pos + skip
        if d.audio_skip > 0:
            if audio is None:
                raise ValueError("this prior's head reads the audio encoding (audio_skip): pass `audio`")
            z = z + rearrange(self.audio_skip(audio), "b t (p s) -> b t p s", p=d.positions)
        z = z + self.spatial_mlp(z)
        logits = self.spatial_out(self.spatial_norm(z)) * d.logit_scale  # (B, T, P, heads*K)
        return rearrange(logits, "b t (h w) (k c) -> b t h w k c", h=d.grid_h, k=d.code_heads)

    def _check_codes(self, codes: torch.Tensor) -> None:
        d = self.dims
        if tuple(codes.shape[2:]) != (d.grid_h, d.grid_w, d.code_heads):
            raise ValueError(
                f"codes grid {tuple(codes.shape[2:])} does not match the prior's {(d.grid_h, d.grid_w, d.code_heads)}"
            )

    # ------------------------------------------------------------------ teacher forcing
    def forward(
        self,
        codes: torch.Tensor,  # (B, T, H', W', heads) long
        mel: torch.Tensor,  # (B, 4T, n_mels)
        episode: torch.Tensor,  # (B,) long rows (n_episodes = <unk>)
        *,
        context_frames: int | None = None,
        prev_frame_dropout: float = 0.0,
        code_noise: float = 0.0,
        episode_dropout: float = 0.0,
        audio_dropout: float = 0.0,
        generator: torch.Generator | None = None,
        style: torch.Tensor | str | None = "posterior",
        return_aux: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict]:
        """Logits (B, T, H', W', heads, num_codes) of frame t given frames < t and all audio;
        with `return_aux` also a dict of the training terms: "kl", the per-dimension KL
        (style_dim,) of the style posterior to N(0, I) averaged over the batch (zeros(0) without
        a style latent), and "sync", the audio–frame contrastive loss (see `sync_loss`; a 0-d
        zero without `sync_dim`).

        `style` (ignored when style_dim = 0): "posterior" = encoded from `codes` themselves
        (a reparameterised draw in training mode, the mean in eval mode), a (B, style_dim) or
        (style_dim,) tensor z, or None = z = 0 (the prior's mean)."""
        self._check_codes(codes)
        B, T = codes.shape[:2]
        dev = codes.device
        prev_codes = codes[:, :-1].long()  # (B, T-1, H', W', heads): input of steps 1..T-1
        if code_noise > 0:
            noise = torch.rand(prev_codes.shape, generator=generator, device=dev) < code_noise
            rand = torch.randint(0, self.dims.num_codes, prev_codes.shape, generator=generator, device=dev)
            prev_codes = torch.where(noise, rand, prev_codes)
        prev = self.embed_frames(prev_codes)  # (B, T-1, D)
        skip = self.skip_input(prev_codes)  # (B, T-1, P, S); MAR: (B, T-1, N, mar_dim)
        if prev_frame_dropout > 0 or self.training:  # in training always: keeps `mask` in the graph (DDP)
            drop = torch.rand(B, T - 1, 1, generator=generator, device=dev) < prev_frame_dropout
            prev = torch.where(drop, self.mask.to(prev.dtype), prev)
            skip = skip.masked_fill(drop[..., None], 0.0)
        prev = torch.cat([self.start.expand(B, 1, -1).to(prev.dtype), prev], dim=1)  # (B, T, D)
        skip = torch.cat([skip.new_zeros(B, 1, *skip.shape[2:]), skip], dim=1)  # (B, T, ...): none at t=0
        if episode_dropout > 0:
            swap = torch.rand(B, generator=generator, device=dev) < episode_dropout
            episode = torch.where(swap, torch.full_like(episode, self.unk_episode), episode)
        audio = self.audio(mel)  # (B, T, D)
        if audio.shape[1] != T:
            raise ValueError(f"mel gives {audio.shape[1]} frames for {T} frames of codes")
        heard = audio  # the sync loss always pairs frames with what was said
        if self.dims.null_audio and (audio_dropout > 0 or self.training):  # in training always: DDP graph
            silent = torch.rand(B, 1, 1, generator=generator, device=dev) < audio_dropout
            audio = torch.where(silent, self.null_audio.to(audio.dtype), audio)
        elif audio_dropout > 0:
            raise ValueError("audio_dropout needs a prior built with null_audio")
        x = prev + self.audio_proj(audio) + self.episode(episode)[:, None]
        kl = x.new_zeros(0)
        if self.dims.style_dim > 0:
            z, kl = self._style_input(codes, style, generator)
            x = x + self.style_proj(z.to(x.dtype))[:, None]
        h = self._frames(x, context_frames or self.dims.context_frames)
        logits = self.head(h, skip, codes, audio)
        if not return_aux:
            return logits
        sync = self.sync_loss(codes, heard) if self.dims.sync_dim > 0 else x.new_zeros((), dtype=torch.float32)
        return logits, dict(kl=kl, sync=sync)

    def sync_loss(self, codes: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between the audio encoding of frame t and an embedding of frame t's
        own codes, the negatives being the other frames of the same window: codes (B, T, H', W',
        heads), audio (B, T, D) → 0-d loss (nats).

        Why: the mouth is a few of a frame's 448 codes, so the next-code loss barely rewards
        listening and the prior learns to copy the previous frame and ignore the audio. Other
        frames of the same window share the look, the framing
        and the episode; what tells them apart and can be heard is the mouth. Matching them
        trains the audio encoder to say what the mouth is doing, which the frame transformer
        then has at hand (SyncNet's objective, applied to the prior's own encoder)."""
        v = F.normalize(self.sync_frame(self.code_embeddings(codes)).float(), dim=-1)  # (B, T, E)
        a = F.normalize(self.sync_audio(audio).float(), dim=-1)  # (B, T, E)
        sim = torch.einsum("bte,bse->bts", a, v) * self.sync_logit_scale.exp().clamp(max=100.0)  # (B, T, T)
        target = torch.arange(codes.shape[1], device=codes.device).expand(codes.shape[0], -1)
        return 0.5 * (F.cross_entropy(sim.transpose(1, 2), target) + F.cross_entropy(sim, target))

    def _style_input(self, codes, style, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, style_dim) z and (style_dim,) batch-mean KL (zeros when z is given)."""
        B, S = codes.shape[0], self.dims.style_dim
        if isinstance(style, str):
            if style != "posterior":
                raise ValueError(f"style must be 'posterior', a tensor or None, got {style!r}")
            mu, logvar = self.style_encoder(codes)  # (B, S) each
            kl = 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float()).mean(0)  # (S,)
            if self.training:
                eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                return mu + (0.5 * logvar).exp() * eps, kl
            return mu, kl
        if style is None:
            z = codes.new_zeros(B, S, dtype=self.style_proj.weight.dtype)
        else:
            z = torch.as_tensor(style, dtype=self.style_proj.weight.dtype, device=codes.device)
            z = z.expand(B, S) if z.ndim == 1 else z
        return z, z.new_zeros(S, dtype=torch.float32)

    @torch.no_grad()
    def encode_style(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (T, H', W', heads) of a reference clip → (style_dim,) mean of its style posterior."""
        if self.dims.style_dim == 0:
            raise ValueError("this prior was trained without a style latent (style_dim: 0)")
        codes = torch.as_tensor(codes, device=next(self.parameters()).device).long()
        self._check_codes(codes[None])
        mu, _ = self.style_encoder(codes[None])
        return mu[0]

    def style_from_seed(self, seed: int) -> torch.Tensor:
        """(style_dim,) draw from N(0, I), fixed by `seed`."""
        if self.dims.style_dim == 0:
            raise ValueError("this prior was trained without a style latent (style_dim: 0)")
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(self.dims.style_dim, generator=g)

    def _frames(self, x: torch.Tensor, context: int) -> torch.Tensor:
        T = x.shape[1]
        cos, sin = rope_angles(torch.arange(T, device=x.device), self.dims.dim // self.dims.heads)
        mask = None if T <= context else band_mask(T, T, context - 1, 0, device=x.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask=mask, is_causal=True)
        return self.norm(x)

    def loss(self, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats) over every code."""
        return F.cross_entropy(logits.reshape(-1, self.dims.num_codes).float(), codes.reshape(-1).long())

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        mel: torch.Tensor,  # (4T, n_mels); a trailing partial frame is dropped
        episode_index: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        context_frames: int | None = None,
        audio_chunk_frames: int = 256,
        cpu_threads: int | None = 1,
        style: torch.Tensor | None = None,
        guidance: float = 1.0,
        prime: torch.Tensor | None = None,
        guidance_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Codes (T, H', W', heads) long, frame by frame with a sliding KV cache of
        `context_frames` frames (default: the trained window); MAR draws the codes of each frame
        one by one (a KV cache inside the frame too). temperature ≤ 0 or top_k = 1 is
        greedy. Deterministic for a given seed; equals the uncached forward for the same codes
        (and the same `style` z; None = 0). See `sample_iter` for the streaming form."""
        param = next(self.parameters())
        mel = torch.as_tensor(mel, dtype=param.dtype, device=param.device)
        T = mel.shape[0] // MELS_PER_FRAME
        d = self.dims
        out = torch.empty(T, d.grid_h, d.grid_w, d.code_heads, dtype=torch.long, device=param.device)
        frames = self.sample_iter(lambda lo, hi: mel[lo * MELS_PER_FRAME : hi * MELS_PER_FRAME], T, episode_index,
                                  temperature, top_k, top_p, seed, context_frames, audio_chunk_frames, cpu_threads,
                                  style, guidance, prime, guidance_map)
        for t, codes in enumerate(frames):
            out[t] = codes
        return out

    @torch.no_grad()
    def sample_iter(
        self,
        mel_fn: Callable[[int, int], torch.Tensor],  # (lo, hi) video frames → (4(hi-lo), n_mels) mel
        n_frames: int,
        episode_index: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        context_frames: int | None = None,
        audio_chunk_frames: int = 256,
        cpu_threads: int | None = 1,
        style: torch.Tensor | None = None,
        guidance: float = 1.0,
        prime: torch.Tensor | None = None,  # (H', W', heads) codes of a frame of the look wanted
        guidance_map: torch.Tensor | None = None,  # (H', W') share of the guidance per grid position, 0 … 1
    ) -> Iterator[torch.Tensor]:
        """Yield the codes (H', W', heads) of frames 0..n_frames-1 one by one, in memory that
        does not grow with n_frames: the mel is read through `mel_fn` a chunk at a time, the
        audio is encoded in chunks of `audio_chunk_frames` with the encoder's receptive field of
        real context either side (exactly what one pass over all the audio gives), and the
        frame transformer keeps a KV cache of the last `context_frames` frames — the same
        sliding window it was trained with, so there is no window border to show as a seam.

        On CPU the per-frame ops are too small to split across threads (on a loaded 2-core machine
        one thread runs several times faster than two): each step runs with `cpu_threads`
        intra-op threads and the caller's setting is restored while it holds the frame; None
        keeps torch's setting.

        `guidance` g ≠ 1 (needs `null_audio`): every step runs a batch of two rows, with the
        audio and with the learned "no audio" input, sharing the drawn codes and the KV cache's
        layout, and draws from uncond + g × (cond − uncond) logits — twice the compute per frame.
        `guidance_map` m (H', W'): position p draws with 1 + (g − 1)·m[p] — m = 1 on the mouth, 0
        elsewhere amplifies the audio where speech shows and leaves the rest as the prior predicts
        it with the audio (g = 1; a strong g there turns an unknown voice's noise into smears).

        `prime`: the codes of a frame of the wanted look (the dVAE codes of the episode's
        reference frame). It goes first, as frame -1 (with frame 0's audio), teacher-forced as
        training feeds real frames, and is not yielded: frame 0 then continues a frame of the
        look instead of starting from the learned `start` alone, which draws all of frame 0's
        codes at once and independently, and can open on another look that takes a second to
        settle. The primer leaves the window after `context_frames` frames, like any frame."""
        d = self.dims
        param = next(self.parameters())
        dev, dtype = param.device, param.dtype
        threads = cpu_threads if dev.type == "cpu" and cpu_threads is not None else None
        context = context_frames or d.context_frames
        chunk = max(1, int(audio_chunk_frames))
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        bias = self._frame_bias(episode_index, style, dev, dtype)
        guide = self._guide(guidance, guidance_map, dev)
        guided = guide.guided
        caches = [dict() for _ in self.blocks]  # with guidance each cache holds both rows
        shift = int(prime is not None)  # frame t sits at position t + shift (the primer at 0)
        prev = self.start.view(1, 1, -1)
        skip_shape = (d.positions, d.spatial_dim) if d.mode == "far" else (self.mar.tokens, d.mar_dim)
        skip = torch.zeros(1, 1, *skip_shape, device=dev, dtype=dtype)  # no previous frame at t=0
        audio = audio_in = None
        a_start, a_stop = 0, 0
        for t in range(int(n_frames)):
            with intra_op_threads(threads):
                if t >= a_stop:  # next audio chunk, with real context either side
                    a_start, a_stop = t, min(t + chunk, n_frames)
                    audio, audio_in = self._audio_chunk(mel_fn, a_start, a_stop, n_frames, guided, dtype)
                if t == 0 and prime is not None:  # frame -1: the primer, at position 0
                    prev, skip = self._prime(prime, prev + audio_in[:, :1] + bias, caches, context)
                a_t = audio[:, t - a_start : t - a_start + 1]  # (1, 1, D)
                x = prev + audio_in[:, t - a_start : t - a_start + 1] + bias  # (1, 1, D)
                h = self._cached_frame_step(x, t + shift, caches, context)  # (1 or 2, 1, D)
                if d.mode == "far":
                    logits = guide(self.spatial(h, skip, a_t)[:, 0])  # (H', W', heads, K)
                    codes = sample_logits(logits, temperature, top_k, top_p, gen)  # (H', W', heads)
                else:  # one code at a time, H'·W'·heads steps
                    guide.next_frame()
                    codes = self.mar.sample(h[:, 0], skip[0],
                                            lambda lg: sample_logits(guide(lg)[None], temperature, top_k, top_p, gen))
                prev = self.embed_frames(codes[None, None])  # (1, 1, D)
                skip = self.skip_input(codes[None, None])  # (1, 1, P, S); MAR: (1, 1, N, mar_dim)
            yield codes

    def _guide(self, guidance: float, guidance_map: torch.Tensor | None, dev) -> Guide:
        """The guidance of one sampling run (see sample_iter), its map checked against the grid."""
        d = self.dims
        if guidance != 1.0 and not d.null_audio:
            raise ValueError(f"guidance {guidance} needs a prior trained with a 'no audio' input "
                             "(prior.audio_dropout > 0); this one has none: retrain it, or sample with guidance 1")
        if guidance_map is None:
            return Guide(guidance, torch.tensor(float(guidance), device=dev))
        m = torch.as_tensor(guidance_map, dtype=torch.float32, device=dev)
        if tuple(m.shape) != (d.grid_h, d.grid_w):
            raise ValueError(f"guidance map {tuple(m.shape)} does not match the prior's grid {(d.grid_h, d.grid_w)}")
        if m.min() < 0 or m.max() > 1:
            raise ValueError(f"guidance map values must lie in [0, 1], got {float(m.min())}..{float(m.max())}")
        g = 1 + (float(guidance) - 1) * m  # (H', W')
        if d.mode == "far":
            return Guide(guidance, g[:, :, None, None])  # against the logits (H', W', heads, K)
        return Guide(guidance, g.reshape(-1).repeat_interleave(d.code_heads), per_token=True)  # MAR's raster order

    def _prime(self, prime: torch.Tensor, x: torch.Tensor, caches: list[dict],
               context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the primer frame's input x (R, 1, D) through the frame transformer at position 0
        (into the KV caches); its codes `prime` (H', W', heads) → (prev (1, 1, D), skip) inputs
        of the next frame, as if the primer had been drawn."""
        d = self.dims
        prime = torch.as_tensor(prime, device=x.device).long()
        if tuple(prime.shape) != (d.grid_h, d.grid_w, d.code_heads):
            raise ValueError(f"primer codes {tuple(prime.shape)} do not match the prior's grid "
                             f"{(d.grid_h, d.grid_w, d.code_heads)}")
        if prime.min() < 0 or prime.max() >= d.num_codes:
            raise ValueError(f"primer codes must lie in [0, {d.num_codes}), got {int(prime.min())}..{int(prime.max())}")
        self._cached_frame_step(x, 0, caches, context)
        return self.embed_frames(prime[None, None]), self.skip_input(prime[None, None])

    def _frame_bias(self, episode_index: int | None, style: torch.Tensor | None, dev, dtype) -> torch.Tensor:
        """(1, 1, D): what sampling adds to every frame input besides the previous frame and the
        audio — the episode embedding and, for a prior with a style latent, style_proj(z)."""
        d = self.dims
        ep = self.episode(torch.tensor([self.episode_row(episode_index)], device=dev))  # (1, D)
        bias = ep[:, None]
        if d.style_dim > 0:
            z = torch.zeros(d.style_dim) if style is None else torch.as_tensor(style)
            bias = bias + self.style_proj(z.to(device=dev, dtype=dtype).reshape(1, 1, d.style_dim))
        elif style is not None:
            raise ValueError("this prior was trained without a style latent (style_dim: 0)")
        return bias

    def _audio_chunk(self, mel_fn: Callable[[int, int], torch.Tensor], start: int, stop: int, n_frames: int,
                     guided: bool, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio encoding of frames [start, stop), encoded with the encoder's receptive field
        of real context either side, and its projection: (R, stop - start, D) each, R = 2 with
        guidance (row 1: the unconditional twin, which heard nothing)."""
        margin = self.audio.receptive_frames()
        lo, hi = max(0, start - margin), min(n_frames, stop + margin)
        mel = torch.as_tensor(mel_fn(lo, hi), device=self.start.device, dtype=dtype)
        if mel.shape[0] != (hi - lo) * MELS_PER_FRAME:
            raise ValueError(f"mel_fn({lo}, {hi}) gave {mel.shape[0]} mel frames, want {(hi - lo) * MELS_PER_FRAME}")
        audio = self.audio(mel[None])[:, start - lo : stop - lo]  # (1, chunk, D)
        if guided:
            audio = torch.cat([audio, self.null_audio.to(dtype).expand_as(audio)])  # (2, chunk, D)
        return audio, self.audio_proj(audio)

    def _cached_frame_step(self, x: torch.Tensor, t: int, caches: list[dict], context: int) -> torch.Tensor:
        """Frame t's input (R, 1, D) through the frame transformer with KV caches trimmed to the
        last `context` - 1 frames (the sliding window of training) → normed state (R, 1, D)."""
        cos, sin = rope_angles(torch.tensor([t], device=x.device), self.dims.dim // self.dims.heads)
        for block, cache in zip(self.blocks, caches):
            if cache.get("k") is not None and cache["k"].shape[2] >= context:
                cache["k"] = cache["k"][:, :, -(context - 1) :] if context > 1 else None
                cache["v"] = cache["v"][:, :, -(context - 1) :] if context > 1 else None
            x = block(x, cos, sin, cache=cache)
        return self.norm(x)


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block, the caller's setting restored
    after it (None or 0: left as it is)."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sample_logits(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """Draw one index per row of (..., K) logits; temperature ≤ 0 or top_k == 1 → argmax."""
    shape = logits.shape[:-1]
    logits = logits.reshape(-1, logits.shape[-1]).float()
    if temperature <= 0 or top_k == 1:
        return logits.argmax(-1).reshape(shape)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits); cheaper than multinomial
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-10, 1.0)
    return (logits - (-u.log()).log()).argmax(-1).reshape(shape)
