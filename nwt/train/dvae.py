"""dVAE-Adv training: reconstruction + (late) adversarial loss, resumable, optionally DDP.

`train_dvae(p, timing, shard_dir, ckpt_dir, report_dir, episode_ids, unseen_ids)` trains on random
frames of the `train` shards and returns the metrics dict that the stage writes as
`reports/train_dvae/metrics.json`.

- Patch training: each step sees a random `crop_height`×`crop_width` window of each frame (corner
  on the code grid); validation and export use whole frames. At equal compute a window gives
  several times the optimiser steps of a whole frame (docs/experiments.md has the calibration).

- Two phases. Joint (the first 1 − `decoder_phase_fraction` of the steps): everything trains on
  L1 + `mse_weight`·MSE through straight-through Gumbel codes; after `adv_start_fraction` of this
  phase also `adv_weight`·(hinge generator loss + `fm_weight`·discriminator feature matching),
  which mostly ages the discriminator for the next phase. Decoder phase (the rest): the decoder
  and the episode embedding alone train on the *argmax* codes — encoder and codebook frozen, run
  without a graph (a step costs ≈⅓ less) — with the adversarial terms at
  `decoder_phase_adv_weight`. Why: on sampled codes the decoder hedges between codes the noise
  swaps, and stronger adversarial weights bought little sharpness; on the fixed codes that eval and
  tokenize use it specialises (PSNR rises) and the critic can make it commit (sharpness rises).
- AdamW (fused where supported), grad-norm clipping, an EMA of the weights that is what gets
  evaluated and exported (decay `ema_decay`, `decoder_phase_ema_decay` in the decoder phase: a
  long average of a decoder the critic keeps moving blurs it again). LR: linear warm-up, then a
  cosine to `min_lr_fraction`·lr that ends where the decoder phase starts (what it freezes is
  annealed); the decoder phase has its own cosine from `decoder_phase_lr`, fresh Adam moments
  with β = (0.5, 0.9), and a constant critic LR `disc_lr` (with the joint phase's moments the
  first adversarial gradients blew the decoder up).
- Episodes: frames are FiLM-conditioned on their episode; `episode_dropout` of them get the
  `<unk>` row instead, so that row is a trained "average look" for unseen episodes.
- Codebook: every `restart_every` steps (until `restart_until_fraction` of training) codes that
  eval's argmax would almost never pick are restarted from recent encoder queries.
- Resume: `ckpt_dir/last.pt` every `checkpoint_every` steps (and at the end) holds model, EMA,
  discriminator, optimisers, step, RNG states and a fingerprint of cfg + episode ids + train
  shards; a run resumes only from a matching fingerprint. The data iterator is re-created at
  every checkpoint boundary with seed (seed, step), so an interrupted and resumed run sees the
  same frames as a straight one (and on CPU ends with the same weights).
- DDP: with WORLD_SIZE > 1 (torchrun) the generator is wrapped in DDP, the discriminator's
  gradients are all-reduced by hand (it is called several times per step), each rank reads
  its share of clips, and only rank 0 validates and writes checkpoints and logs.
"""
from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from nwt.atomic import atomic_path
from nwt.constants import CROP_H, CROP_W, Timing
from nwt.data.shards import iter_clips, random_frames, shard_paths
from nwt.eval.metrics import psnr_db, psnr_per_frame, sharpness_ratio, ssim
from nwt.models.discriminator import MultiScaleDiscriminator, d_hinge_loss, feature_matching_loss, g_hinge_loss
from nwt.models.dvae import DVAE, DVAEDims
from nwt.models.memcodes import Memcodes
from nwt.params import TrainDVAEParams, as_dict
from nwt.precision import autocast, warn_if_cpu_bf16_emulated
from nwt.train.common import adamw, lr_factor
from nwt.train.learning_warnings import dvae_warnings, report
from nwt.train.loop import (
    Checkpoints,
    ProcessGroup,
    StepLoop,
    join_process_group,
    log_metrics,
    open_live,
    run_fingerprint,
    wrap_ddp,
)

log = logging.getLogger(__name__)

# the code that shapes a checkpoint: a change to any of these starts training afresh
CODE_MODULES = ("nwt.models.dvae", "nwt.models.memcodes", "nwt.models.discriminator", "nwt.train.dvae",
                "nwt.train.common", "nwt.train.loop")
# keys that do not change what a step computes (the rest, `steps` included, shape the schedule)
RESUME_NEUTRAL_KEYS = ("log_every",)
DVAE_FILE = "dvae.pt"
TRAIN_PSNR_FRAMES = 200  # train frames (evenly spaced) behind train.psnr_db, the memorisation check
NO_UNSEEN = "no unseen episode in this corpus (one episode, or shard.unseen_episodes: 0)"
NO_VAL = "no val clips (every episode has fewer than 5 clips, or shard.val_fraction: 0)"


def dvae_dims(p: TrainDVAEParams, n_episodes: int) -> DVAEDims:
    """The DVAEDims of a `train_dvae` params section for `n_episodes` known episodes (256×224 frames)."""
    return DVAEDims(
        channels=p.channels, max_mult=p.max_mult, blocks=p.blocks, downsample=p.downsample, num_codes=p.num_codes,
        heads=p.heads, code_dim=p.code_dim, temperature=p.temperature, logit_scale=p.logit_scale, stem=p.stem,
        norm=p.norm, n_episodes=n_episodes, episode_dim=p.episode_dim, use_episode=p.episode_embedding,
        height=CROP_H, width=CROP_W,
    )


def decoder_phase_start(p: TrainDVAEParams) -> int:
    """First step of the decoder phase (= `steps` when there is none)."""
    return p.steps - int(round(p.decoder_phase_fraction * p.steps))


def lr_at(step: int, p: TrainDVAEParams) -> float:
    """Generator LR. Joint phase: linear warm-up over `warmup_steps`, then cosine from lr to
    `min_lr_fraction`·lr at the decoder phase's start (the encoder and codebook it freezes are
    annealed). Decoder phase: its own cosine from `decoder_phase_lr` to `min_lr_fraction` of it."""
    start = decoder_phase_start(p)
    if step < start:
        return p.lr * lr_factor(step, start, p.warmup_steps, p.min_lr_fraction)
    return p.decoder_phase_lr * lr_factor(step - start, p.steps - start, 0, p.min_lr_fraction)


def disc_lr_at(step: int, p: TrainDVAEParams) -> float:
    """Discriminator LR: follows the generator's joint schedule; constant `disc_lr` in the decoder
    phase (a decaying critic stops keeping up with the decoder it has to push)."""
    if step < decoder_phase_start(p):
        return p.disc_lr * lr_at(step, p) / p.lr
    return p.disc_lr


def to_input(frames: np.ndarray, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) uint8 (clamped, rounded)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def data_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def random_crops(frames: np.ndarray, height: int, width: int, grid: int, rng: np.random.Generator) -> np.ndarray:
    """(B, H, W, 3) → (B, height, width, 3): one random window per frame, its corner on the code grid.

    Patch training: the convolutional dVAE sees random windows in training and whole frames
    everywhere else (its per-pixel ChannelNorm makes that the same network). At equal compute
    a 128×112 window gives 4× the optimiser steps of a whole frame, which is what the CPU budget
    lacks; aligning corners to the `grid` (= downsample) keeps every code on the phase it has
    in a whole frame. Sizes are rounded down to that grid (128×112 → 128×96 at downsample 32);
    0 or a size ≥ the frame's means whole frames.
    """
    b, h, w = frames.shape[:3]
    height = h if height <= 0 else min(h, max(grid, height // grid * grid))
    width = w if width <= 0 else min(w, max(grid, width // grid * grid))
    if height == h and width == w:
        return frames
    ys = rng.integers(0, (h - height) // grid + 1, b) * grid
    xs = rng.integers(0, (w - width) // grid + 1, b) * grid
    return np.stack([f[y : y + height, x : x + width] for f, y, x in zip(frames, ys, xs)])


@torch.no_grad()
def reconstruct(model: DVAE, frames: np.ndarray, episodes: np.ndarray, batch_size: int, device
                ) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode reconstruction → (uint8 frames (N, H, W, 3), indices (N, H', W', heads))."""
    recs, codes = [], []
    for i in range(0, len(frames), batch_size):
        x = to_input(frames[i : i + batch_size], device)
        ep = torch.from_numpy(episodes[i : i + batch_size]).to(device)
        with autocast(device):
            rec, idx, _ = model(x, ep)
        recs.append(to_uint8(rec))
        codes.append(idx.cpu())
    return np.concatenate(recs), torch.cat(codes).numpy()


def evaluate_frames(model: DVAE, frames: np.ndarray, episodes: np.ndarray, batch_size: int, device
                    ) -> tuple[dict, np.ndarray]:
    rec, codes = reconstruct(model, frames, episodes, batch_size, device)
    dims = model.dims
    counts = torch.stack([torch.bincount(torch.from_numpy(codes[..., k].ravel()).long(), minlength=dims.num_codes)
                          for k in range(dims.heads)])
    usage = Memcodes.usage_from_counts(counts.float())
    metrics = {
        "psnr_db": psnr_db(frames, rec),
        "ssim": float(ssim(frames, rec).mean()),
        "sharpness_ratio": sharpness_ratio(frames, rec),
        "perplexity": float(np.mean(usage["perplexity"])),
        "codes_used_fraction": float(min(usage["used_fraction"])),
        "codes_used_fraction_per_head": [float(u) for u in usage["used_fraction"]],
        "frames": int(len(frames)),
    }
    return metrics, rec


def load_eval_frames(paths: list[str], stride: int, max_frames: int, episode_map
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every `stride`-th frame of every clip (at most `max_frames`, spread over clips) → (frames
    (N, H, W, 3), model episode rows (N,), PSNR of each frame against its clip's mean frame (N,):
    the "still picture of the clip" baseline of the learning check)."""
    frames, episodes, still = [], [], []
    for clip in iter_clips(paths):
        picked = clip.frames[::stride]
        frames.append(picked)
        episodes.append(np.full(len(picked), episode_map(clip.episode_index), np.int64))
        mean = clip.frames.mean(0).round().astype(np.uint8)  # (H, W, 3) over all of the clip's frames
        still.append(psnr_per_frame(picked, np.broadcast_to(mean, picked.shape)))
    if not frames:
        return np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0,), np.int64), np.zeros((0,))
    frames_a, episodes_a, still_a = np.concatenate(frames), np.concatenate(episodes), np.concatenate(still)
    if len(frames_a) > max_frames:  # evenly spaced subset, deterministic
        keep = np.linspace(0, len(frames_a) - 1, max_frames).round().astype(int)
        frames_a, episodes_a, still_a = frames_a[keep], episodes_a[keep], still_a[keep]
    return frames_a, episodes_a, still_a


def write_grid(path: Path, gt: np.ndarray, rec: np.ndarray, n: int = 4, empty_note: str = "no frames") -> None:
    """PNG grid, one row per frame: ground truth | reconstruction. Without frames a labelled
    placeholder (`empty_note`), so that the stage's declared output always exists."""
    if len(gt) == 0:
        write_placeholder(path, empty_note)
        return
    pick = np.linspace(0, len(gt) - 1, min(n, len(gt))).round().astype(int)
    grid = np.concatenate([np.concatenate([gt[i], rec[i]], axis=1) for i in pick], axis=0)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def write_placeholder(path: Path, note: str) -> None:
    """A grid-sized grey PNG that says `note` (where a split this corpus lacks would be shown)."""
    img = np.full((CROP_H, 2 * CROP_W, 3), 64, np.uint8)
    words, lines = note.split(), [""]
    for w in words:  # wrap at ~30 characters
        lines[-1:] = [f"{lines[-1]} {w}".strip()] if len(lines[-1]) + len(w) < 30 else [lines[-1], w]
    for i, line in enumerate(lines):
        cv2.putText(img, line, (10, 40 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (230, 230, 230), 1, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), img)


# ------------------------------------------------------------------------------------ helpers
@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    # one fused multi-tensor lerp: a per-parameter Python loop cost ≈5 % of a CPU step
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


# ------------------------------------------------------------------------------------ training
class DVAETraining:
    """One run's networks, optimisers, data stream and schedule; `step(i)` trains step i."""

    def __init__(self, p: TrainDVAEParams, dims: DVAEDims, group: ProcessGroup, train_paths: list[str],
                 episode_lookup: torch.Tensor):
        self.p, self.dims, self.group, self.train_paths = p, dims, group, train_paths
        self.device = group.device
        self.episode_lookup = episode_lookup  # shard episode index (n = unknown) → embedding row
        torch.manual_seed(p.seed)
        # channels-last: oneDNN's (and cuDNN's) preferred convolution layout, a few per cent faster
        # steps (`make bench`); the exported weights load into a default-layout model as they are
        self.model = DVAE(dims).to(self.device, memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval()
        for q in self.ema.parameters():
            q.requires_grad_(False)
        self.disc = MultiScaleDiscriminator(p.disc_scales, p.disc_channels).to(self.device,
                                                                                 memory_format=torch.channels_last)
        self.opt_g = adamw(self.model.parameters(), p.lr, (0.9, 0.99), p.weight_decay)
        self.opt_d = adamw(self.disc.parameters(), p.disc_lr, (0.5, 0.9), 0.0)
        self.ddp_model: torch.nn.Module = self.model
        self.decoder_start = decoder_phase_start(p)
        self.adv_start = int(p.adv_start_fraction * self.decoder_start)  # a share of the joint phase
        self.restart_until = min(int(p.restart_until_fraction * p.steps), self.decoder_start)
        self.frames_iter = None
        self.crop_rng: np.random.Generator | None = None
        self.pending_logs: dict[str, float] = {}

    # -- state
    def state(self) -> dict:
        return {"dims": asdict(self.dims), "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "disc": self.disc.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.disc.load_state_dict(ckpt["disc"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])

    def distribute(self, step: int) -> None:
        """Under torchrun: rank-own Gumbel noise and restarts, DDP generator, rank 0's critic."""
        if self.group.world <= 1:
            return
        torch.manual_seed(data_seed(self.p.seed + 7919 * self.group.rank, step))
        with warnings.catch_warnings():  # broadcast_buffers=False is still the way to keep rank-local buffers
            warnings.simplefilter("ignore", FutureWarning)
            self.ddp_model = wrap_ddp(self.model, self.group, broadcast_buffers=False)
        for q in self.disc.parameters():
            dist.broadcast(q.data, 0)

    # -- one step
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (B, 3, crop_height, crop_width) in [-1, 1] channels-last, embedding rows (B,))."""
        p, g = self.p, self.group
        if self.frames_iter is None or step % max(1, p.checkpoint_every) == 0:  # re-created at checkpoints
            self.frames_iter = random_frames(self.train_paths, p.batch_size, data_seed(p.seed, step), g.rank, g.world,
                                             buffer_size=p.shuffle_buffer)
            self.crop_rng = np.random.default_rng(data_seed(p.seed + 1 + g.rank, step))
        frames, episodes = next(self.frames_iter)
        frames = random_crops(frames, p.crop_height, p.crop_width, self.dims.downsample, self.crop_rng)
        x = to_input(frames, self.device).contiguous(memory_format=torch.channels_last)
        ep = torch.from_numpy(episodes).to(self.device).clamp(0, self.dims.n_episodes)
        ep = self.episode_lookup[ep]
        if p.episode_dropout > 0:
            drop = torch.rand(ep.shape, device=self.device) < p.episode_dropout
            ep = torch.where(drop, torch.full_like(ep, self.dims.unk_index), ep)
        return x, ep

    def step(self, step: int) -> dict:
        """Train step `step` (0-based); returns its losses (tensors) for logging."""
        p = self.p
        x, ep = self.batch(step)
        for group in self.opt_g.param_groups:
            group["lr"] = lr_at(step, p)
        decoder_phase = step >= self.decoder_start
        if step == self.decoder_start and self.decoder_start < p.steps:
            # the decoder phase is a GAN fine-tune: fresh moments and β = (0.5, 0.9), as the critic's
            # (the joint phase's annealed second moments would turn the first adversarial
            # gradients into huge steps). Saved with opt_g, so a resume inside the phase keeps them.
            self.opt_g.state.clear()
            for group in self.opt_g.param_groups:
                group["betas"] = (0.5, 0.9)
        adv_weight = p.decoder_phase_adv_weight if decoder_phase else p.adv_weight
        adv_on = adv_weight > 0 and (step >= self.adv_start or decoder_phase)
        out = self.generator_step(x, ep, decoder_phase, adv_weight if adv_on else 0.0)
        if adv_on:
            out["d_loss"] = self.critic_step(step, out.pop("real_out"), out["recon"])
        done = step + 1
        ema_decay = p.decoder_phase_ema_decay if decoder_phase else p.ema_decay
        ema_update(self.ema, self.model, min(ema_decay, (1 + done) / (10 + done)))
        if p.restart_every and done % p.restart_every == 0 and done <= self.restart_until:
            self.restart_dead_codes()
        return out

    def generator_step(self, x: torch.Tensor, ep: torch.Tensor, decoder_phase: bool, adv_weight: float) -> dict:
        p = self.p
        out: dict = {}
        with autocast(self.device, p.cpu_bf16):
            if decoder_phase:
                # argmax codes, as eval and tokenize see them; no graph through the frozen encoder
                # and codebook (≈⅓ cheaper a step). Called on the bare module: gradients are
                # all-reduced by hand.
                z, _ = self.model.quantize_argmax(x)  # (B, code_dim, H', W')
                recon = self.model.decode_features(z, ep)
                out["stats"] = {}
            else:
                recon, _, out["stats"] = self.ddp_model(x, ep)  # (B, 3, H, W)
            recon = recon.float()
            out["l1"] = (recon - x).abs().mean()
            out["mse"] = F.mse_loss(recon, x)
            loss = out["l1"] + p.mse_weight * out["mse"]
            if adv_weight > 0:
                out["real_out"] = self.disc(x)
                self.disc.requires_grad_(False)
                fake_out = self.disc(recon)
                out["g_adv"] = g_hinge_loss(fake_out)
                out["fm"] = feature_matching_loss(out["real_out"], fake_out)
                loss = loss + adv_weight * (out["g_adv"] + p.fm_weight * out["fm"])
                self.disc.requires_grad_(True)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if decoder_phase:
            self.group.average_grads(self.model)
        out["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
        self.opt_g.step()
        out["loss"], out["recon"] = loss, recon
        return out

    def critic_step(self, step: int, real_out, recon: torch.Tensor) -> torch.Tensor:
        for group in self.opt_d.param_groups:
            group["lr"] = disc_lr_at(step, self.p)
        with autocast(self.device, self.p.cpu_bf16):
            d_loss = d_hinge_loss(real_out, self.disc(recon.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.group.average_grads(self.disc)
        self.opt_d.step()
        return d_loss

    def restart_dead_codes(self) -> None:
        mc = self.model.memcodes
        if self.group.world > 1:
            dist.all_reduce(mc.code_usage)
        dead = mc.restart_dead_codes(self.p.restart_min_usage)
        if self.group.world > 1:
            dist.broadcast(mc.codes.data, 0)
        with torch.no_grad():
            self.ema.memcodes.codes.data.copy_(mc.codes.data)  # restarted rows must not lag in the EMA
        self.pending_logs["train/restarted_codes"] = float(dead.sum())

    def step_logs(self, out: dict, step: int) -> dict[str, float]:
        """The dvclive points of a logged step (and restarts since the last one)."""
        logs = {**self.pending_logs, "train/loss": out["loss"].item(), "train/l1": out["l1"].item(),
                "train/mse": out["mse"].item(), "train/lr": lr_at(step, self.p),
                "train/grad_norm": float(out["grad_norm"])}
        if "perplexity" in out["stats"]:  # joint phase only (the decoder phase's codes are fixed)
            logs["train/batch_perplexity"] = float(out["stats"]["perplexity"])
        if "d_loss" in out:
            logs.update({"train/g_adv": out["g_adv"].item(), "train/fm": out["fm"].item(),
                         "train/d_loss": out["d_loss"].item()})
        self.pending_logs = {}
        return logs

    def quick_val(self, val: tuple[np.ndarray, np.ndarray], live, done: int) -> None:
        n = min(len(val[0]), self.p.val_quick_frames)
        pick = np.linspace(0, len(val[0]) - 1, n).round().astype(int)
        m, _ = evaluate_frames(self.ema, val[0][pick], val[1][pick], self.p.eval_batch_size, self.device)
        log_metrics(live, done, {"val/psnr_db": m["psnr_db"], "val/codes_used_fraction": m["codes_used_fraction"],
                                 "val/sharpness_ratio": m["sharpness_ratio"]})
        tqdm.write(f"step {done}: val psnr {m['psnr_db']:.2f} dB, sharpness {m['sharpness_ratio']:.2f}, "
                   f"codes used ≥ {m['codes_used_fraction']:.2f}")


def train_dvae(
    p: TrainDVAEParams,
    timing: Timing,
    shard_dir: Path,
    ckpt_dir: Path,
    report_dir: Path,
    episode_ids: list[str],
    unseen_ids: list[str] = (),  # type: ignore[assignment]
    *,
    stop_after: int | None = None,
    device: str | None = None,
) -> dict:
    """Train (or resume) the dVAE; write `ckpt_dir/dvae.pt`; return the metrics dict.

    `stop_after` ends the run right after the checkpoint at that step without exporting
    (it simulates an interruption in tests; it is not part of the fingerprint).
    """
    t_start = time.time()
    shard_dir, report_dir = Path(shard_dir), Path(report_dir)
    group = join_process_group(device)
    try:
        warn_if_cpu_bf16_emulated(group.device, p.cpu_bf16)
        train_paths = shard_paths(shard_dir, "train")
        if not train_paths:
            raise FileNotFoundError(f"no train-*.tar shards in {shard_dir}: the dVAE needs at least one train clip "
                                    "(an episode with a face shot holding speech of at least segment.min_clip_s; "
                                    "see data/shard/ledger.parquet for what was rejected)")
        episode_ids, unseen_ids = list(episode_ids), list(unseen_ids)
        dims = dvae_dims(p, len(episode_ids))
        unseen_rows = {i for i, e in enumerate(episode_ids) if e in set(unseen_ids)}
        rows = [dims.unk_index if i in unseen_rows else i for i in range(len(episode_ids))] + [dims.unk_index]
        ckpt = Checkpoints(ckpt_dir, run_fingerprint("dvae", as_dict(p), train_paths, CODE_MODULES, episode_ids,
                                                     sorted(unseen_ids), resume_neutral=RESUME_NEUTRAL_KEYS),
                           group, "train_dvae")
        run = DVAETraining(p, dims, group, train_paths, torch.tensor(rows, device=group.device))
        last = ckpt.resume()
        if last is not None:
            run.load(last)
        start, wall_before = (int(last["step"]), float(last["train_wall_s"])) if last is not None else (0, 0.0)
        del last
        run.distribute(start)
        live = open_live(report_dir, group, resume=start > 0)
        val, unseen = _eval_sets(shard_dir, p, rows, dims, group)
        meta = {"episode_ids": episode_ids, "unseen_ids": unseen_ids}
        loop = StepLoop(p.steps, start, p.checkpoint_every, group, "train_dvae", stop_after=stop_after,
                        wall_before=wall_before, save=lambda s, w: ckpt.save_last(s, w, {**run.state(), **meta}))
        _run_steps(run, loop, live, val)
        if loop.interrupted:
            if live is not None:
                live.end()
            return {"interrupted_at": loop.step}
        result = _finish(run, loop, live, val, unseen, report_dir, ckpt, meta, timing, t_start) if group.is_main else {}
        group.barrier()
        return result
    finally:
        group.close()


def _run_steps(run: DVAETraining, loop: StepLoop, live, val) -> None:
    p = run.p
    run.model.train()
    for step in loop:
        out = run.step(step)
        if not run.group.is_main:
            continue
        done = step + 1
        if loop.due(p.log_every):
            log_metrics(live, done, run.step_logs(out, step))
            loop.bar.set_postfix(l1=f"{out['l1'].item():.4f}")
        if val is not None and p.val_every and done % p.val_every == 0 and done < p.steps:
            run.quick_val(val, live, done)


def _eval_sets(shard_dir: Path, p: TrainDVAEParams, rows: list[int], dims: DVAEDims, group: ProcessGroup):
    """(val, unseen) frames and embedding rows for validation (rank 0; None where a split is empty)."""
    if not group.is_main:
        return None, None
    val_paths, unseen_paths = shard_paths(shard_dir, "val"), shard_paths(shard_dir, "unseen")

    def row(index: int) -> int:  # shard episode index → embedding row (<unk> for unseen or unknown)
        return rows[index] if 0 <= index < len(rows) - 1 else dims.unk_index

    val = load_eval_frames(val_paths, p.val_frame_stride, p.val_max_frames, row) if val_paths else None
    unseen = (load_eval_frames(unseen_paths, p.val_frame_stride, p.val_max_frames, lambda i: dims.unk_index)
              if unseen_paths else None)
    return val, unseen


def _finish(run: DVAETraining, loop: StepLoop, live, val, unseen, report_dir: Path, ckpt: Checkpoints, meta: dict,
            timing: Timing, t_start: float) -> dict:
    """Rank 0 after the last step: full validation, figures, the exported dvae.pt."""
    p, dims, group = run.p, run.dims, run.group
    train_wall = loop.train_wall_s
    result = _final_eval(p, run.ema, val, unseen, group.device, report_dir, live, loop.step)
    result["bits_per_frame"] = dims.bits_per_frame
    train_psnr, train_frames = _train_psnr(run)
    result["train"] = {
        "steps": loop.step, "wall_s": round(train_wall, 2),
        "frames_per_s": round(loop.step * p.batch_size * group.world / max(train_wall, 1e-9), 3),
        "stage_wall_s": round(time.time() - t_start, 2), "world_size": group.world,
        "params_m": round(sum(q.numel() for q in run.model.parameters()) / 1e6, 3),
        "psnr_db": train_psnr, "psnr_frames": train_frames,
    }
    v = result["val"]
    result["warnings"] = report("train_dvae", dvae_warnings(v.get("psnr_db"), v.get("mean_frame_psnr_db"), train_psnr))
    ckpt.export(DVAE_FILE, {"dims": asdict(dims), "state_dict": run.ema.state_dict(), **meta,
                            "timing": {"fps": timing.fps, "sample_rate": timing.sample_rate}, "step": loop.step})
    live.log_metric("train/wall_s", result["train"]["wall_s"], plot=False)
    live.end()
    return result


def _train_psnr(run: DVAETraining) -> tuple[float | None, int]:
    """(PSNR of the EMA on TRAIN_PSNR_FRAMES evenly spaced train frames, their count): beside val's,
    the memorisation check."""
    p = run.p
    rows = run.episode_lookup.cpu().numpy()  # shard episode index → embedding row, as in training
    frames, episodes, _ = load_eval_frames(run.train_paths, p.val_frame_stride, TRAIN_PSNR_FRAMES,
                                           lambda i: int(rows[min(max(i, 0), len(rows) - 1)]))
    if not len(frames):
        return None, 0
    m, _ = evaluate_frames(run.ema, frames, episodes, p.eval_batch_size, run.device)
    return m["psnr_db"], len(frames)


def _final_eval(p: TrainDVAEParams, ema: DVAE, val, unseen, device, report_dir: Path, live, step: int) -> dict:
    """Val and unseen figures and grids; a split this corpus lacks gets `psnr_db: null` + a reason
    and a labelled placeholder grid (every declared output of the stage is always written)."""
    result: dict = {"val": {"psnr_db": None, "reason": NO_VAL}, "unseen": {"psnr_db": None, "reason": NO_UNSEEN}}
    t = time.time()
    live.step = step
    if val is not None and len(val[0]):
        m, rec = evaluate_frames(ema, val[0], val[1], p.eval_batch_size, device)
        result["val"] = {**m, "mean_frame_psnr_db": float(val[2].mean())}
        write_grid(report_dir / "recon_grid.png", val[0], rec)
        for k in ("psnr_db", "ssim", "sharpness_ratio", "perplexity", "codes_used_fraction"):
            live.log_metric(f"val/{k}", m[k])
    else:
        write_placeholder(report_dir / "recon_grid.png", NO_VAL)
    if unseen is not None and len(unseen[0]):
        m, rec = evaluate_frames(ema, unseen[0], unseen[1], p.eval_batch_size, device)
        result["unseen"] = {k: m[k] for k in ("psnr_db", "ssim", "sharpness_ratio", "frames")}
        write_grid(report_dir / "recon_grid_unseen.png", unseen[0], rec)
        live.log_metric("unseen/psnr_db", m["psnr_db"])
    else:
        write_placeholder(report_dir / "recon_grid_unseen.png", NO_UNSEEN)
    result["eval_wall_s"] = round(time.time() - t, 2)
    return result
