"""Train the audio-conditioned prior (FAR or MAR, `mode`) on token shards, resumably.

Teacher forcing on random windows of `window_frames` frames (with their 4× mel) drawn from
the train clips, cross-entropy over every code. With a style latent (`style_dim > 0`) the loss
is the negative ELBO per code: cross-entropy + `style_kl_weight` × KL(q(z | window) ‖ N(0, I))
/ codes per window, the KL counted per dimension with free bits (`style_free_bits` nats: a
dimension below it costs nothing, so the encoder is not pushed to collapse) and its weight
ramped linearly from 0 over `style_kl_anneal_steps`. AdamW (fused where supported), linear warm-up
+ cosine decay, gradient clipping, bf16 autocast on CUDA only. DDP when WORLD_SIZE > 1 (gloo
on CPU, nccl on CUDA); rank 0 writes.

Resume (DESIGN.md): every `checkpoint_every` steps `ckpt_dir/last.pt` holds model, optimizer,
scheduler, step, RNG states and a fingerprint of the params (all but `steps` and
`checkpoint_every`, so a run can be extended), the episode ids and the token files. A run
resumes only on a matching fingerprint, otherwise it starts fresh and says so. Batches and
training noise are drawn from generators seeded by (seed, rank, step), so an interrupted and
resumed run computes the same steps as an uninterrupted one.

The end result is `ckpt_dir/prior.pt` = {dims, state_dict, episode_ids, timing, fingerprint,
step}, readable with `torch.load(weights_only=True)` (see nwt.models.prior_io.load_prior).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from nwt.constants import MELS_PER_FRAME, Timing
from nwt.data.tokens import TokenClip, load_codebook, load_token_clips, token_paths
from nwt.models.prior import Prior, PriorDims
from nwt.precision import autocast
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
CODE_MODULES = ("nwt.models.prior", "nwt.models.mar_head", "nwt.models.audio_encoder", "nwt.models.style",
                "nwt.train.prior", "nwt.train.common")

# defaults for keys missing from cfg (params.yaml `prior` is the source of truth)
DEFAULTS = dict(
    seed=0,
    mode="far",
    layers=4,
    dim=256,
    heads=4,
    audio_layers=2,
    audio_window=8,
    context_frames=16,
    code_dim=16,
    spatial_dim=32,
    logit_scale=4.0,
    window_frames=16,
    steps=750,
    batch_size=8,
    lr=3e-3,
    warmup_steps=20,
    min_lr_ratio=0.1,
    weight_decay=0.01,
    grad_clip=1.0,
    prev_frame_dropout=0.3,
    code_noise=0.05,
    episode_dropout=0.1,
    audio_dropout=0.1,
    changed_code_weight=1.0,
    sync_dim=64,
    sync_weight=3.0,
    audio_skip=32,
    codebook_init=True,
    checkpoint_every=50,
    log_every=10,
    style_dim=8,
    style_hidden=64,
    style_kl_weight=1.0,
    style_free_bits=0.25,
    style_kl_anneal_steps=50,
    mar_layers=2,
    mar_dim=64,
    mar_heads=2,
)
# changing these does not change what a step computes: a run with more steps resumes
RESUME_NEUTRAL_KEYS = ("steps", "checkpoint_every", "log_every")
DIMS_KEYS = ("mode", "layers", "dim", "heads", "audio_layers", "audio_window", "context_frames", "code_dim", "spatial_dim", "logit_scale",
             "sync_dim", "audio_skip", "style_dim", "style_hidden", "mar_layers", "mar_dim", "mar_heads")


def prior_dims(cfg: dict, **data) -> PriorDims:
    """The PriorDims of a `prior` params section (DEFAULTS filled in) on token data described by
    `data` (grid_h, grid_w, code_heads, num_codes, n_episodes, n_mels). A prior trained with
    `audio_dropout` > 0 has the learned "no audio" input that guidance needs."""
    return PriorDims(**{k: cfg[k] for k in DIMS_KEYS}, null_audio=float(cfg["audio_dropout"]) > 0, **data)


def changed_weighted_ce(logits: torch.Tensor, codes: torch.Tensor, changed_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain mean cross-entropy, the training loss): codes that differ from the previous frame's
    code at the same place weigh `changed_weight` times the rest (weights normalised to mean 1).

    Why: most codes of a talking-head clip repeat the previous frame's, and copying them is
    learnt first and drives the mean loss; the codes that change (the mouth, mostly) are the
    ones only the audio can predict. Up-weighting them moves the gradient to where listening
    pays. The plain mean is what gets logged and evaluated. Frame 0 has no previous frame:
    weight 1. logits (B, T, H', W', heads, K), codes (B, T, H', W', heads).
    """
    ce = F.cross_entropy(logits.flatten(0, -2).float(), codes.reshape(-1).long(), reduction="none").view(codes.shape)
    plain = ce.mean()
    if changed_weight == 1.0:
        return plain, plain
    changed = torch.zeros_like(codes, dtype=torch.bool)
    changed[:, 1:] = codes[:, 1:] != codes[:, :-1]
    w = torch.where(changed, changed_weight, 1.0).to(ce.dtype)
    return plain, (w * ce).sum() / w.sum()


def _num_codes(clips: list[TokenClip]) -> int:
    """Codes per head, from the token metadata the tokenize stage writes."""
    sizes = {int(c.meta["num_codes"]) for c in clips if "num_codes" in c.meta}
    if len(sizes) != 1 or any("num_codes" not in c.meta for c in clips):
        raise ValueError(f"token clips disagree on or lack num_codes ({sorted(sizes)}): rerun `dvc repro tokenize`")
    return sizes.pop()


def sample_batch(clips: list[ClipTensors], batch_size: int, window: int, rng: np.random.Generator):
    """Random windows: clips drawn in proportion to their length, start uniform inside."""
    lengths = np.array([c.frames for c in clips], dtype=np.float64)
    idx = rng.choice(len(clips), size=batch_size, p=lengths / lengths.sum())
    L = int(min(window, min(clips[i].frames for i in idx)))
    codes, mels, eps = [], [], []
    for i in idx:
        c = clips[i]
        s = int(rng.integers(0, c.frames - L + 1))
        codes.append(c.codes[s : s + L])
        mels.append(c.mel[s * MELS_PER_FRAME : (s + L) * MELS_PER_FRAME])
        eps.append(c.episode)
    return torch.stack(codes), torch.stack(mels), torch.tensor(eps, dtype=torch.long)


from nwt.eval.nll import LN2, ClipTensors, eval_windows, evaluate, to_tensors, unigram_log2p  # noqa: E402


# ---------------------------------------------------------------- plumbing
def _setup_distributed() -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, initialised_here)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return 0, 1, torch.device("cuda" if cuda else "cpu"), False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    init_here = not dist.is_initialized()
    if init_here:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if cuda else "cpu"), init_here


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _make_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n and "episode" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n and "episode" not in n)]
    groups = [dict(params=decay, weight_decay=cfg["weight_decay"]), dict(params=rest, weight_decay=0.0)]
    return adamw(groups, cfg["lr"], (0.9, 0.95))


def style_kl_term(kl: torch.Tensor, step: int, cfg: dict, codes_per_window: int) -> torch.Tensor:
    """KL part of the per-code negative ELBO: weight (annealed linearly from 0 over
    `style_kl_anneal_steps`) × Σ_dims max(KL_dim, free bits) / codes per window. `kl` is the
    batch-mean KL per style dimension (empty without a style latent → 0)."""
    if kl.numel() == 0:
        return kl.new_zeros(())
    anneal = int(cfg["style_kl_anneal_steps"])
    weight = float(cfg["style_kl_weight"]) * (min(1.0, (step + 1) / anneal) if anneal > 0 else 1.0)
    return weight * kl.float().clamp_min(float(cfg["style_free_bits"])).sum() / codes_per_window


def _step_seed(seed: int, rank: int, step: int) -> list[int]:
    return [int(seed), int(rank), int(step)]


# ---------------------------------------------------------------- entry point
def train_prior(
    cfg: dict,
    token_dir: Path,
    ckpt_dir: Path,
    report_dir: Path,
    episode_ids: list[str],
    *,
    stop_after: int | None = None,
) -> dict:
    """Train (or resume) the prior; return nested metrics {"val": {...}, "train": {...}}.

    `stop_after` ends this run after that global step without the final export (it
    simulates an interruption for tests)."""
    cfg = {**DEFAULTS, **cfg}
    token_dir, ckpt_dir, report_dir = Path(token_dir), Path(ckpt_dir), Path(report_dir)
    t_begin = time.time()
    train_paths, val_paths = token_paths(token_dir, "train"), token_paths(token_dir, "val")
    if not train_paths:
        raise FileNotFoundError(f"no train token shards (train-*.tar) in {token_dir}")
    clips = load_token_clips(train_paths), load_token_clips(val_paths)
    rank, world, device, init_here = _setup_distributed()
    try:
        return _train(cfg, (train_paths, val_paths), clips, ckpt_dir, report_dir, list(episode_ids),
                      rank, world, device, stop_after, t_begin, token_dir)
    finally:
        if init_here:
            dist.destroy_process_group()


def _train(cfg, paths, clips, ckpt_dir, report_dir, episode_ids, rank, world, device, stop_after, t_begin, token_dir) -> dict:
    train_paths, val_paths = paths
    train_clips_raw, val_clips_raw = clips
    if not train_clips_raw:
        raise ValueError(f"train token shards in {token_dir} hold no clips")
    first = train_clips_raw[0]
    grid_h, grid_w, code_heads = (int(v) for v in first.codes.shape[1:])
    num_codes = _num_codes(train_clips_raw + val_clips_raw)
    timing = Timing(int(first.meta.get("fps", 25)), int(first.meta.get("sample_rate", 16000)))
    n_mels = int(first.mel.shape[1])
    n_episodes = len(episode_ids)
    dims = prior_dims(cfg, grid_h=grid_h, grid_w=grid_w, code_heads=code_heads, num_codes=num_codes,
                      n_episodes=n_episodes, n_mels=n_mels)
    train_clips, val_clips = to_tensors(train_clips_raw, n_episodes), to_tensors(val_clips_raw, n_episodes)
    del train_clips_raw, val_clips_raw

    fp = fingerprint(
        "prior",
        {k: v for k, v in sorted(cfg.items()) if k not in RESUME_NEUTRAL_KEYS},
        episode_ids,
        files_fingerprint(train_paths + val_paths),
        source_fingerprint(*CODE_MODULES),
    )
    steps = int(cfg["steps"])
    seed = int(cfg["seed"])

    torch.manual_seed(seed)
    model = Prior(dims).to(device)
    optimizer = _make_optimizer(model, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, int(cfg["warmup_steps"]), float(cfg["min_lr_ratio"]))
    )
    last_path = ckpt_dir / "last.pt"
    ckpt = load_for_resume(last_path, fp)
    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        log.info("resuming prior from %s at step %d", last_path, step)
    else:
        log.info("no matching prior checkpoint at %s: starting fresh", last_path)
        if cfg["codebook_init"]:
            values = load_codebook(token_dir)
            if values is None:
                raise FileNotFoundError(f"prior.codebook_init is on but {token_dir} has no codebook.npy "
                                        "(tokens from an older tokenize stage): rerun `dvc repro tokenize`")
            model.init_from_codebook(torch.from_numpy(values))
    del ckpt
    resumed = step > 0

    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    live = None
    if rank == 0:
        from dvclive import Live

        report_dir.mkdir(parents=True, exist_ok=True)
        live = Live(str(report_dir), dvcyaml=False, save_dvc_exp=False, resume=resumed)
        live.step = step
        log.info(
            "prior: %.2fM parameters, %d train / %d val clips, grid %dx%dx%d, %d codes, %d episodes, device %s, world %d",
            sum(p.numel() for p in model.parameters()) / 1e6, len(train_clips), len(val_clips),
            grid_h, grid_w, code_heads, num_codes, n_episodes, device, world,
        )

    def save_last() -> None:
        if rank == 0:
            save_checkpoint(last_path, dict(
                model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                step=step, rng=rng_state(), fingerprint=fp, dims=dims.to_dict(),
            ))
        _barrier(world)

    model.train()
    t_loop = time.time()
    start_step = step
    frames_seen = 0
    bar = tqdm(total=steps, initial=step, desc="train_prior", disable=rank != 0, dynamic_ncols=True)
    acc_loss, acc_correct, acc_n, acc_steps, acc_kl, acc_sync = 0.0, 0.0, 0, 0, 0.0, 0.0
    while step < steps:
        rng = np.random.default_rng(_step_seed(seed, rank, step))
        codes, mel, ep = sample_batch(train_clips, int(cfg["batch_size"]), int(cfg["window_frames"]), rng)
        codes, mel, ep = codes.to(device), mel.to(device), ep.to(device)
        gen = torch.Generator(device=device).manual_seed(int(rng.integers(0, 2**62)))
        with autocast(device):
            logits, aux = ddp(
                codes, mel, ep,
                prev_frame_dropout=float(cfg["prev_frame_dropout"]), code_noise=float(cfg["code_noise"]),
                episode_dropout=float(cfg["episode_dropout"]), audio_dropout=float(cfg["audio_dropout"]),
                generator=gen, return_aux=True,
            )
        kl, sync = aux["kl"], aux["sync"]
        ce, weighted = changed_weighted_ce(logits, codes, float(cfg["changed_code_weight"]))
        loss = weighted + style_kl_term(kl, step, cfg, codes[0].numel()) + float(cfg["sync_weight"]) * sync
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["grad_clip"] and cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
        optimizer.step()
        scheduler.step()
        step += 1
        frames_seen += codes.shape[0] * codes.shape[1] * world

        acc_loss += ce.item()
        acc_kl += kl.float().sum().item()
        acc_sync += sync.item()
        acc_steps += 1
        with torch.no_grad():
            acc_correct += (logits.argmax(-1) == codes).sum().item()
            acc_n += codes.numel()
        if rank == 0:
            bar.update(1)
            if step % int(cfg["log_every"]) == 0 or step == steps:
                mean_loss = acc_loss / acc_steps
                live.step = step
                live.log_metric("train/loss", mean_loss)
                live.log_metric("train/nll_bits_per_code", mean_loss / LN2)
                live.log_metric("train/code_accuracy", acc_correct / acc_n)
                live.log_metric("train/kl", acc_kl / acc_steps)
                live.log_metric("train/sync_loss", acc_sync / acc_steps)
                live.log_metric("train/lr", scheduler.get_last_lr()[0])
                live.log_metric("train/wall_s", time.time() - t_begin, plot=False)
                live.next_step()
                bar.set_postfix(bits=f"{mean_loss / LN2:.3f}", acc=f"{acc_correct / acc_n:.3f}")
                acc_loss, acc_correct, acc_n, acc_steps, acc_kl, acc_sync = 0.0, 0.0, 0, 0, 0.0, 0.0
        if step % int(cfg["checkpoint_every"]) == 0 or step == steps:
            save_last()
        if stop_after is not None and step >= stop_after and step < steps:
            bar.close()
            if live is not None:
                live.end()
            log.info("prior: stopping early at step %d (stop_after)", step)
            return {"train": {"steps": step}}
    bar.close()
    train_s = time.time() - t_loop

    metrics: dict = {}
    if rank == 0:
        save_checkpoint(ckpt_dir / "prior.pt", dict(
            dims=dims.to_dict(), state_dict=model.state_dict(), episode_ids=list(episode_ids),
            timing=dict(fps=timing.fps, sample_rate=timing.sample_rate), fingerprint=fp, step=step,
        ))
        unigram = unigram_log2p(train_clips, code_heads, num_codes)
        windows = eval_windows(val_clips, int(cfg["window_frames"]))
        val = evaluate(model, windows, int(cfg["batch_size"]), device, unigram)
        if not windows:
            log.warning("no val clips: val metrics are NaN")
        wall = time.time() - t_begin
        metrics = {
            "val": val,
            "train": {
                "steps": step,
                "wall_s": wall,
                "frames_per_s": frames_seen / train_s if train_s > 0 and frames_seen else 0.0,
                "s_per_step": train_s / (step - start_step) if step > start_step else 0.0,
            },
        }
        live.step = step
        for k, v in val.items():
            live.log_metric(f"val/{k}", v, plot=False)
        live.log_metric("train/wall_s", wall, plot=False)
        live.end()
        log.info(
            "prior: %d steps, val %.3f bits/code (shuffled audio %.3f, unigram %.3f), accuracy %.3f, kl %.2f nats, %.0f s",
            step, val["nll_bits_per_code"], val["nll_shuffled_audio_bits_per_code"], val["unigram_entropy_bits"],
            val["code_accuracy"], val["kl"], wall,
        )
    _barrier(world)
    return metrics
