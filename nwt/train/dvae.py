"""dVAE-Adv training: reconstruction + (late) adversarial loss, resumable, optionally DDP.

`train_dvae(cfg, shard_dir, ckpt_dir, report_dir, episode_ids, unseen_ids)` trains on random
frames of the `train` shards and returns the metrics dict that the stage writes as
`reports/train_dvae/metrics.json`.

- Patch training: each step sees a random `crop_height`×`crop_width` window of each frame (corner
  on the code grid); validation and export use whole frames. On the 2-core CPU 128×112 windows
  at batch 8 gave ≈29 dB where whole frames at the same pixel throughput (4× fewer steps) gave
  ≈26.6 (calibration runs, README).

- Two phases. Joint (the first 1 − `decoder_phase_fraction` of the steps): everything trains on
  L1 + `mse_weight`·MSE through straight-through Gumbel codes; after `adv_start_fraction` of this
  phase also `adv_weight`·(hinge generator loss + `fm_weight`·discriminator feature matching),
  which mostly ages the discriminator for the next phase. Decoder phase (the rest): the decoder
  and the episode embedding alone train on the *argmax* codes — encoder and codebook frozen, run
  without a graph (a step costs ≈⅓ less) — with the adversarial terms at
  `decoder_phase_adv_weight`. Why: on sampled codes the decoder hedges between codes the noise
  swaps, and stronger adversarial weights bought little sharpness (≤ 0.27, README); on the fixed codes that eval and
  tokenize use it specialises (PSNR rises) and the critic can make it commit (sharpness rises).
- AdamW (fused where supported), grad-norm clipping, an EMA of the weights that is what gets
  evaluated and exported (decay `ema_decay`, `decoder_phase_ema_decay` in the decoder phase: a
  long average of a decoder the critic keeps moving blurs it again). LR: linear warm-up, then a
  cosine to `min_lr_fraction`·lr that ends where the decoder phase starts (what it freezes is
  annealed); the decoder phase has its own cosine from `decoder_phase_lr`, fresh Adam moments
  with β = (0.5, 0.9), and a constant critic LR `disc_lr` (with the joint phase's moments the
  first adversarial gradients blew the decoder up: sharpness 6, 19 dB).
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
import os
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

from nwt.constants import Timing
from nwt.atomic import atomic_path
from nwt.data.shards import iter_clips, random_frames, shard_paths
from nwt.eval.metrics import psnr_db, sharpness_ratio, ssim
from nwt.models.discriminator import MultiScaleDiscriminator, d_hinge_loss, feature_matching_loss, g_hinge_loss
from nwt.models.dvae import DVAE, DVAEDims
from nwt.models.memcodes import Memcodes
from nwt.precision import autocast, warn_if_cpu_bf16_emulated
from nwt.train.common import adamw, lr_factor
from nwt.checkpoint import (
    files_fingerprint,
    fingerprint,
    source_fingerprint,
    load_for_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

log = logging.getLogger(__name__)

# the code that shapes a checkpoint: a change to any of these starts training afresh
CODE_MODULES = ("nwt.models.dvae", "nwt.models.memcodes", "nwt.models.discriminator", "nwt.train.dvae",
                "nwt.train.common")

# Defaults for keys a params section may leave out (params.yaml documents each one).
DEFAULTS = dict(
    seed=0, steps=3300, batch_size=8, crop_height=128, crop_width=112, lr=2e-3, weight_decay=0.0, warmup_steps=50,
    min_lr_fraction=0.05, grad_clip=1.0, ema_decay=0.99, mse_weight=1.0,
    channels=64, max_mult=4, blocks=1, downsample=16, stem=4, norm="channel", num_codes=256, heads=2, code_dim=128,
    temperature=0.3, logit_scale=10.0, episode_embedding=True, episode_dim=32, episode_dropout=0.1,
    restart_every=25, restart_until_fraction=0.7, restart_min_usage=0.1,
    adv_weight=0.1, fm_weight=1.0, adv_start_fraction=0.8, disc_channels=16, disc_scales=2, disc_lr=4e-4,
    decoder_phase_fraction=0.4, decoder_phase_adv_weight=2.0, decoder_phase_lr=2e-3,
    decoder_phase_ema_decay=0.93, cpu_bf16=False,
    checkpoint_every=200, log_every=20, val_every=550, val_quick_frames=32, val_frame_stride=5,
    val_max_frames=400, eval_batch_size=16, shuffle_buffer=256,
)


def _dims_from_cfg(cfg: dict, n_episodes: int) -> DVAEDims:
    return DVAEDims(
        channels=cfg["channels"], max_mult=cfg["max_mult"], blocks=cfg["blocks"], downsample=cfg["downsample"],
        num_codes=cfg["num_codes"], heads=cfg["heads"], code_dim=cfg["code_dim"], temperature=cfg["temperature"],
        logit_scale=cfg["logit_scale"], stem=cfg["stem"], norm=cfg["norm"],
        n_episodes=n_episodes, episode_dim=cfg["episode_dim"], use_episode=bool(cfg["episode_embedding"]),
    )


def decoder_phase_start(cfg: dict) -> int:
    """First step of the decoder phase (= `steps` when there is none)."""
    if not 0 <= float(cfg["decoder_phase_fraction"]) < 1:
        raise ValueError(f"train_dvae.decoder_phase_fraction must be in [0, 1), got {cfg['decoder_phase_fraction']}")
    return int(cfg["steps"]) - int(round(cfg["decoder_phase_fraction"] * int(cfg["steps"])))


def lr_at(step: int, cfg: dict) -> float:
    """Generator LR. Joint phase: linear warm-up over `warmup_steps`, then cosine from lr to
    `min_lr_fraction`·lr at the decoder phase's start (the encoder and codebook it freezes are
    annealed). Decoder phase: its own cosine from `decoder_phase_lr` to `min_lr_fraction` of it."""
    start = decoder_phase_start(cfg)
    if step < start:
        return cfg["lr"] * lr_factor(step, start, cfg["warmup_steps"], cfg["min_lr_fraction"])
    return cfg["decoder_phase_lr"] * lr_factor(step - start, int(cfg["steps"]) - start, 0, cfg["min_lr_fraction"])


def disc_lr_at(step: int, cfg: dict) -> float:
    """Discriminator LR: follows the generator's joint schedule; constant `disc_lr` in the decoder
    phase (a decaying critic stops keeping up with the decoder it has to push)."""
    if step < decoder_phase_start(cfg):
        return cfg["disc_lr"] * lr_at(step, cfg) / cfg["lr"]
    return cfg["disc_lr"]


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
def reconstruct(model: DVAE, frames: np.ndarray, episodes: np.ndarray, batch_size: int, device) -> tuple[np.ndarray, np.ndarray]:
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


def evaluate_frames(model: DVAE, frames: np.ndarray, episodes: np.ndarray, batch_size: int, device) -> tuple[dict, np.ndarray]:
    rec, codes = reconstruct(model, frames, episodes, batch_size, device)
    dims = model.dims
    counts = torch.stack([torch.bincount(torch.from_numpy(codes[..., k].ravel()).long(), minlength=dims.num_codes) for k in range(dims.heads)])
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


def load_eval_frames(paths: list[str], stride: int, max_frames: int, episode_map) -> tuple[np.ndarray, np.ndarray]:
    """Every `stride`-th frame of every clip (at most `max_frames`, spread over clips) + model episode rows."""
    frames, episodes = [], []
    for clip in iter_clips(paths):
        picked = clip.frames[::stride]
        frames.append(picked)
        episodes.append(np.full(len(picked), episode_map(clip.episode_index), np.int64))
    if not frames:
        return np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0,), np.int64)
    frames_a, episodes_a = np.concatenate(frames), np.concatenate(episodes)
    if len(frames_a) > max_frames:  # evenly spaced subset, deterministic
        keep = np.linspace(0, len(frames_a) - 1, max_frames).round().astype(int)
        frames_a, episodes_a = frames_a[keep], episodes_a[keep]
    return frames_a, episodes_a


def write_grid(path: Path, gt: np.ndarray, rec: np.ndarray, n: int = 4) -> None:
    """PNG grid, one row per frame: ground truth | reconstruction."""
    if len(gt) == 0:
        return
    pick = np.linspace(0, len(gt) - 1, min(n, len(gt))).round().astype(int)
    grid = np.concatenate([np.concatenate([gt[i], rec[i]], axis=1) for i in pick], axis=0)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


# ------------------------------------------------------------------------------------ helpers
@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    # one fused multi-tensor lerp: a per-parameter Python loop cost ≈5 % of a CPU step
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _allreduce_grads(module: torch.nn.Module, world_size: int) -> None:
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size


def _dist_setup(device_hint: str | None) -> tuple[int, int, torch.device]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        dev = device_hint or ("cuda" if torch.cuda.is_available() else "cpu")
        return 0, 1, torch.device(dev)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_hint != "cpu" else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank()
    if torch.cuda.is_available() and device_hint != "cpu":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return rank, world_size, torch.device("cuda", local)
    return rank, world_size, torch.device("cpu")


# ------------------------------------------------------------------------------------ training
def train_dvae(
    cfg: dict,
    shard_dir: Path,
    ckpt_dir: Path,
    report_dir: Path,
    episode_ids: list[str],
    unseen_ids: list[str] = [],  # noqa: B006 (never mutated)
    *,
    stop_after: int | None = None,
    device: str | None = None,
) -> dict:
    """Train (or resume) the dVAE; write `ckpt_dir/dvae.pt`; return the metrics dict.

    `stop_after` ends the run right after the checkpoint at that step without exporting
    (it simulates an interruption in tests; it is not part of the fingerprint).
    """
    t_start = time.time()
    cfg = {**DEFAULTS, **cfg}
    for key in ("ema_decay", "decoder_phase_ema_decay"):
        if not 0 <= float(cfg[key]) < 1:  # 1 would freeze the exported weights at their initialisation
            raise ValueError(f"train_dvae.{key} must be in [0, 1), got {cfg[key]}")
    timing = Timing(**cfg.get("media", {}))
    shard_dir, ckpt_dir, report_dir = Path(shard_dir), Path(ckpt_dir), Path(report_dir)
    rank, world_size, device = _dist_setup(device)
    is_main = rank == 0
    cpu_bf16 = bool(cfg["cpu_bf16"])
    warn_if_cpu_bf16_emulated(device, cpu_bf16)

    train_paths = shard_paths(shard_dir, "train")
    if not train_paths:
        raise FileNotFoundError(f"no train-*.tar shards in {shard_dir}")
    unseen_rows = {i for i, e in enumerate(episode_ids) if e in set(unseen_ids)}
    dims = _dims_from_cfg(cfg, len(episode_ids))

    def episode_row(index: int) -> int:
        """Shard episode index → embedding row (<unk> for unseen or unknown episodes)."""
        return dims.unk_index if (index in unseen_rows or not 0 <= index < len(episode_ids)) else index

    fp = fingerprint(
        {k: v for k, v in sorted(cfg.items())}, list(episode_ids), sorted(unseen_ids), files_fingerprint(train_paths),
        source_fingerprint(*CODE_MODULES),
    )

    torch.manual_seed(cfg["seed"])
    # channels-last: oneDNN's (and cuDNN's) preferred convolution layout — 2–5 % faster joint
    # steps on this CPU on top of bf16 (`make bench`); the exported weights load into a default-layout
    # model as they are
    model = DVAE(dims).to(device, memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    disc = MultiScaleDiscriminator(cfg["disc_scales"], cfg["disc_channels"]).to(device, memory_format=torch.channels_last)
    opt_g = adamw(model.parameters(), cfg["lr"], (0.9, 0.99), cfg["weight_decay"])
    opt_d = adamw(disc.parameters(), cfg["disc_lr"], (0.5, 0.9), 0.0)

    steps = int(cfg["steps"])
    step, wall_before = 0, 0.0
    last_path = ckpt_dir / "last.pt"
    ckpt = load_for_resume(last_path, fp)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        disc.load_state_dict(ckpt["disc"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        step, wall_before = int(ckpt["step"]), float(ckpt["train_wall_s"])
        set_rng_state(ckpt["rng"])
        if is_main:
            log.info("resuming dVAE training from %s at step %d", last_path, step)
    elif is_main:
        why = "no checkpoint" if not last_path.exists() else "checkpoint fingerprint differs"
        log.info("starting dVAE training fresh (%s; fingerprint %s)", why, fp)
    if world_size > 1:  # different Gumbel noise and restarts per rank; weights come from rank 0
        torch.manual_seed(data_seed(cfg["seed"] + 7919 * rank, step))
    resuming = ckpt is not None
    del ckpt

    ddp_model = model
    if world_size > 1:
        with warnings.catch_warnings():  # broadcast_buffers=False is still the way to keep rank-local buffers
            warnings.simplefilter("ignore", FutureWarning)
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
            )
        for p in disc.parameters():
            dist.broadcast(p.data, 0)

    live = None
    if is_main:
        from dvclive import Live

        report_dir.mkdir(parents=True, exist_ok=True)
        live = Live(str(report_dir), dvcyaml=False, save_dvc_exp=False, resume=resuming)

    # validation frames (rank 0), loaded once
    val_paths, unseen_paths = shard_paths(shard_dir, "val"), shard_paths(shard_dir, "unseen")
    val = unseen = None
    if is_main:
        if val_paths:
            val = load_eval_frames(val_paths, cfg["val_frame_stride"], cfg["val_max_frames"], episode_row)
        if unseen_paths:
            unseen = load_eval_frames(unseen_paths, cfg["val_frame_stride"], cfg["val_max_frames"], lambda i: dims.unk_index)

    decoder_start = decoder_phase_start(cfg)
    adv_start = int(cfg["adv_start_fraction"] * decoder_start)  # a share of the joint phase
    restart_until = min(int(cfg["restart_until_fraction"] * steps), decoder_start)
    batch_size = int(cfg["batch_size"])
    ckpt_every = max(1, int(cfg["checkpoint_every"]))
    episode_lookup = torch.tensor([episode_row(i) for i in range(len(episode_ids))] + [dims.unk_index], device=device)

    def save_last(at_step: int, wall: float) -> None:
        save_checkpoint(last_path, {
            "dims": asdict(dims), "model": model.state_dict(), "ema": ema.state_dict(), "disc": disc.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": at_step, "train_wall_s": wall,
            "rng": rng_state(), "fingerprint": fp, "episode_ids": list(episode_ids), "unseen_ids": list(unseen_ids),
        })

    bar = tqdm(total=steps, initial=step, desc="train_dvae", disable=not is_main, dynamic_ncols=True)
    t_loop = time.time()
    frames_iter = None
    last_logged: dict[str, float] = {}
    interrupted = False
    model.train()
    while step < steps:
        if frames_iter is None or step % ckpt_every == 0:  # re-created at checkpoint boundaries
            frames_iter = random_frames(
                train_paths, batch_size, data_seed(cfg["seed"], step), rank, world_size, buffer_size=cfg["shuffle_buffer"]
            )
            crop_rng = np.random.default_rng(data_seed(cfg["seed"] + 1 + rank, step))
        frames, episodes = next(frames_iter)
        frames = random_crops(frames, int(cfg["crop_height"]), int(cfg["crop_width"]), dims.downsample, crop_rng)
        x = to_input(frames, device).contiguous(memory_format=torch.channels_last)  # (B, 3, crop_height, crop_width)
        ep = torch.from_numpy(episodes).to(device).clamp(0, len(episode_ids))
        ep = episode_lookup[ep]
        if cfg["episode_dropout"] > 0:
            drop = torch.rand(ep.shape, device=device) < cfg["episode_dropout"]
            ep = torch.where(drop, torch.full_like(ep, dims.unk_index), ep)
        for group in opt_g.param_groups:
            group["lr"] = lr_at(step, cfg)
        decoder_phase = step >= decoder_start
        if step == decoder_start and decoder_start < steps:
            # the decoder phase is a GAN fine-tune: fresh moments and β = (0.5, 0.9), as the critic's
            # (the joint phase's annealed second moments would turn the first adversarial
            # gradients into huge steps). Saved with opt_g, so a resume inside the phase keeps them.
            opt_g.state.clear()
            for group in opt_g.param_groups:
                group["betas"] = (0.5, 0.9)
        adv_weight = cfg["decoder_phase_adv_weight"] if decoder_phase else cfg["adv_weight"]
        adv_on = adv_weight > 0 and (step >= adv_start or decoder_phase)

        # ---- generator
        with autocast(device, cpu_bf16):
            if decoder_phase:
                # argmax codes, as eval and tokenize see them; no graph through the frozen encoder
                # and codebook (≈⅓ cheaper a step). Called on the bare module: gradients are
                # all-reduced by hand.
                z, _ = model.quantize_argmax(x)  # (B, code_dim, H', W')
                recon = model.decode_features(z, ep)
                stats = {}
            else:
                recon, _, stats = ddp_model(x, ep)  # (B, 3, H, W)
            recon = recon.float()
            l1 = (recon - x).abs().mean()
            mse = F.mse_loss(recon, x)
            loss = l1 + cfg["mse_weight"] * mse
            if adv_on:
                real_out = disc(x)
                disc.requires_grad_(False)
                fake_out = disc(recon)
                g_adv = g_hinge_loss(fake_out)
                fm = feature_matching_loss(real_out, fake_out)
                loss = loss + adv_weight * (g_adv + cfg["fm_weight"] * fm)
                disc.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if decoder_phase and world_size > 1:
            _allreduce_grads(model, world_size)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt_g.step()

        # ---- discriminator
        d_loss = None
        if adv_on:
            for group in opt_d.param_groups:
                group["lr"] = disc_lr_at(step, cfg)
            with autocast(device, cpu_bf16):
                d_loss = d_hinge_loss(real_out, disc(recon.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            if world_size > 1:
                _allreduce_grads(disc, world_size)
            opt_d.step()

        step += 1
        ema_decay = cfg["decoder_phase_ema_decay"] if decoder_phase else cfg["ema_decay"]
        ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))

        # ---- dead-code restarts
        if cfg["restart_every"] and step % cfg["restart_every"] == 0 and step <= restart_until:
            mc = model.memcodes
            if world_size > 1:
                dist.all_reduce(mc.code_usage)
            dead = mc.restart_dead_codes(cfg["restart_min_usage"])
            if world_size > 1:
                dist.broadcast(mc.codes.data, 0)
            with torch.no_grad():
                ema.memcodes.codes.data.copy_(mc.codes.data)  # restarted rows must not lag in the EMA
            last_logged["train/restarted_codes"] = float(dead.sum())

        # ---- logging, validation, checkpoints (rank 0)
        if is_main:
            bar.update(1)
            if step % cfg["log_every"] == 0 or step == steps:
                last_logged.update({
                    "train/loss": loss.item(), "train/l1": l1.item(), "train/mse": mse.item(),
                    "train/lr": lr_at(step - 1, cfg), "train/grad_norm": float(grad_norm),
                })
                if "perplexity" in stats:  # joint phase only (the decoder phase's codes are fixed)
                    last_logged["train/batch_perplexity"] = float(stats["perplexity"])
                if adv_on:
                    last_logged.update({"train/g_adv": g_adv.item(), "train/fm": fm.item(), "train/d_loss": d_loss.item()})
                live.step = step
                for k, v in last_logged.items():
                    live.log_metric(k, v)
                last_logged = {}
                bar.set_postfix(l1=f"{l1.item():.4f}")
            if val is not None and cfg["val_every"] and step % cfg["val_every"] == 0 and step < steps:
                n = min(len(val[0]), cfg["val_quick_frames"])
                pick = np.linspace(0, len(val[0]) - 1, n).round().astype(int)
                m, _ = evaluate_frames(ema, val[0][pick], val[1][pick], cfg["eval_batch_size"], device)
                live.step = step
                live.log_metric("val/psnr_db", m["psnr_db"])
                live.log_metric("val/codes_used_fraction", m["codes_used_fraction"])
                live.log_metric("val/sharpness_ratio", m["sharpness_ratio"])
                tqdm.write(f"step {step}: val psnr {m['psnr_db']:.2f} dB, sharpness {m['sharpness_ratio']:.2f}, "
                           f"codes used ≥ {m['codes_used_fraction']:.2f}")
        if step % ckpt_every == 0 or step == steps:
            if is_main:
                save_last(step, wall_before + time.time() - t_loop)
            if world_size > 1:
                dist.barrier()
            if stop_after is not None and step >= stop_after and step < steps:
                interrupted = True
                break
    bar.close()
    train_wall = wall_before + time.time() - t_loop
    if interrupted:
        if live is not None:
            live.end()
        return {"interrupted_at": step}

    result: dict = {}
    if is_main:
        result = _final_eval(cfg, dims, ema, val, unseen, device, report_dir, live, step)
        result["bits_per_frame"] = dims.bits_per_frame
        result["train"] = {
            "steps": step, "wall_s": round(train_wall, 2),
            "frames_per_s": round(step * batch_size * world_size / max(train_wall, 1e-9), 3),
            "stage_wall_s": round(time.time() - t_start, 2), "world_size": world_size,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        }
        save_checkpoint(ckpt_dir / "dvae.pt", {
            "dims": asdict(dims), "state_dict": ema.state_dict(), "episode_ids": list(episode_ids),
            "unseen_ids": list(unseen_ids), "timing": {"fps": timing.fps, "sample_rate": timing.sample_rate},
            "fingerprint": fp, "step": step,
        })
        live.log_metric("train/wall_s", result["train"]["wall_s"], plot=False)
        live.end()
    if world_size > 1:
        dist.barrier()
    return result


def _final_eval(cfg, dims, ema, val, unseen, device, report_dir: Path, live, step: int) -> dict:
    result: dict = {"val": {}, "unseen": {}}
    t = time.time()
    live.step = step
    if val is not None and len(val[0]):
        m, rec = evaluate_frames(ema, val[0], val[1], cfg["eval_batch_size"], device)
        result["val"] = m
        write_grid(report_dir / "recon_grid.png", val[0], rec)
        for k in ("psnr_db", "ssim", "sharpness_ratio", "perplexity", "codes_used_fraction"):
            live.log_metric(f"val/{k}", m[k])
    if unseen is not None and len(unseen[0]):
        m, rec = evaluate_frames(ema, unseen[0], unseen[1], cfg["eval_batch_size"], device)
        result["unseen"] = {k: m[k] for k in ("psnr_db", "ssim", "sharpness_ratio", "frames")}
        write_grid(report_dir / "recon_grid_unseen.png", unseen[0], rec)
        live.log_metric("unseen/psnr_db", m["psnr_db"])
    result["eval_wall_s"] = round(time.time() - t, 2)
    return result
