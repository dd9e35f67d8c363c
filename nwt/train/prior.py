"""Train the audio-conditioned prior (FAR or MAR, `mode`) on token shards, resumably.

Teacher forcing on random windows of `window_frames` frames (with their 4× mel) drawn from
the train clips, cross-entropy over every code. With a style latent (`style_dim > 0`) the loss
is the negative ELBO per code: cross-entropy + `style_kl_weight` × KL(q(z | window) ‖ N(0, I))
/ codes per window, the KL counted per dimension with free bits (`style_free_bits` nats: a
dimension below it costs nothing, so the encoder is not pushed to collapse) and its weight
ramped linearly from 0 over `style_kl_anneal_steps`. AdamW (fused where supported), linear warm-up
+ cosine decay, gradient clipping, bf16 autocast on CUDA only. DDP when WORLD_SIZE > 1 (gloo
on CPU, nccl on CUDA); rank 0 writes. The harness (process group, resume, checkpoints, dvclive)
is nwt.train.loop's.

Resume (docs/design.md): `ckpt_dir/last.pt` every `checkpoint_every` steps; its fingerprint leaves
out `steps`, `checkpoint_every` and `log_every`, so a run can be extended. Batches and training
noise are drawn from generators seeded by (seed, rank, step), so an interrupted and resumed run
computes the same steps as an uninterrupted one.

The end result is `ckpt_dir/prior.pt` = {dims, state_dict, episode_ids, timing, fingerprint,
step}, readable with `torch.load(weights_only=True)` (see nwt.models.prior_io.load_prior).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nwt.constants import MELS_PER_FRAME, Timing
from nwt.data.tokens import TokenClip, load_codebook, load_token_clips, token_paths
from nwt.eval.nll import LN2, ClipTensors, eval_windows, evaluate, to_tensors, unigram_log2p
from nwt.models.prior import Prior, PriorDims
from nwt.models.voice_aug import MelAugment, augment_mel, tempo_span, tempo_window
from nwt.params import PriorParams, as_dict
from nwt.precision import autocast
from nwt.train.common import adamw, lr_factor
from nwt.train.learning_warnings import prior_warnings, report
from nwt.train.loop import (
    Checkpoints,
    ProcessGroup,
    StepLoop,
    decay_groups,
    join_process_group,
    log_metrics,
    open_live,
    run_fingerprint,
    wrap_ddp,
)

log = logging.getLogger(__name__)

# the code that shapes a checkpoint: a change to any of these starts training afresh
CODE_MODULES = ("nwt.models.prior", "nwt.models.mar_head", "nwt.models.audio_encoder", "nwt.models.style",
                "nwt.models.voice_aug", "nwt.train.prior", "nwt.train.common", "nwt.train.loop")
# changing these does not change what a step computes: a run with more steps resumes
RESUME_NEUTRAL_KEYS = ("steps", "checkpoint_every", "log_every")
PRIOR_FILE = "prior.pt"
NO_VAL = "no val clips (every episode has fewer than 5 clips, or shard.val_fraction: 0)"


def prior_dims(p: PriorParams, *, grid_h: int, grid_w: int, code_heads: int, num_codes: int, n_episodes: int,
               n_mels: int) -> PriorDims:
    """The PriorDims of a `prior` params section on token data of that grid, code count, episode
    count and mel bands. A prior trained with `audio_dropout` > 0 has the learned "no audio" input
    that guidance needs."""
    return PriorDims(
        mode=p.mode, layers=p.layers, dim=p.dim, heads=p.heads, audio_layers=p.audio_layers,
        audio_window=p.audio_window, context_frames=p.context_frames, code_dim=p.code_dim, spatial_dim=p.spatial_dim,
        logit_scale=p.logit_scale, sync_dim=p.sync_dim, audio_skip=p.audio_skip, style_dim=p.style_dim,
        style_hidden=p.style_hidden, mar_layers=p.mar_layers, mar_dim=p.mar_dim, mar_heads=p.mar_heads,
        null_audio=p.audio_dropout > 0, grid_h=grid_h, grid_w=grid_w, code_heads=code_heads, num_codes=num_codes,
        n_episodes=n_episodes, n_mels=n_mels,
    )


def changed_weighted_ce(logits: torch.Tensor, codes: torch.Tensor, changed_weight: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
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


def sample_batch(clips: list[ClipTensors], batch_size: int, window: int, rng: np.random.Generator,
                 tempo: float = 0.0):
    """Random windows: clips drawn in proportion to their length, start uniform inside. With
    `tempo` > 0 each window is its clip played r times as fast, r = exp(U(±ln(1 + tempo))) (as far
    as the clip is long): speech and video together (nwt.models.voice_aug.tempo_window), so the
    prior hears faster and slower speakers than the presenter with the mouth still in sync."""
    lengths = np.array([c.frames for c in clips], dtype=np.float64)
    idx = rng.choice(len(clips), size=batch_size, p=lengths / lengths.sum())
    L = int(min(window, min(clips[i].frames for i in idx)))
    codes, mels, eps = [], [], []
    for i in idx:
        c = clips[i]
        if tempo > 0:
            span = np.log1p(tempo)
            rate = min(float(np.exp(rng.uniform(-span, span))), c.frames / L)
            s = int(rng.integers(0, c.frames - tempo_span(L, rate) + 1))
            window_codes, window_mel = tempo_window(c.codes, c.mel, s, L, rate)
        else:
            s = int(rng.integers(0, c.frames - L + 1))
            window_codes, window_mel = c.codes[s : s + L], c.mel[s * MELS_PER_FRAME : (s + L) * MELS_PER_FRAME]
        codes.append(window_codes)
        mels.append(window_mel)
        eps.append(c.episode)
    return torch.stack(codes), torch.stack(mels), torch.tensor(eps, dtype=torch.long)


def mel_augment(p: PriorParams) -> MelAugment:
    """The voice augmentation of the training log-mel (nwt.models.voice_aug): the presenter's one
    voice warped, equalised, gain-shifted and noised into many, so that the prior listens to what
    lip sync needs (timing, articulation) rather than to that voice."""
    return MelAugment(warp=p.aug_mel_warp, eq=p.aug_mel_eq, gain=p.aug_mel_gain, noise=p.aug_mel_noise,
                      reverb=p.aug_reverb)


def style_kl_term(kl: torch.Tensor, step: int, p: PriorParams, codes_per_window: int) -> torch.Tensor:
    """KL part of the per-code negative ELBO: weight (annealed linearly from 0 over
    `style_kl_anneal_steps`) × Σ_dims max(KL_dim, free bits) / codes per window. `kl` is the
    batch-mean KL per style dimension (empty without a style latent → 0)."""
    if kl.numel() == 0:
        return kl.new_zeros(())
    anneal = p.style_kl_anneal_steps
    weight = p.style_kl_weight * (min(1.0, (step + 1) / anneal) if anneal > 0 else 1.0)
    return weight * kl.float().clamp_min(p.style_free_bits).sum() / codes_per_window


def _decays(name: str, param: torch.nn.Parameter) -> bool:
    """Weight decay on matrices only: not on embeddings, norms or biases."""
    return param.ndim >= 2 and "embed" not in name and "episode" not in name


class TokenData:
    """Train and val token clips as tensors, and what they say about the model's shape."""

    def __init__(self, token_dir: Path, n_episodes: int, timing: Timing):
        self.train_paths, self.val_paths = token_paths(token_dir, "train"), token_paths(token_dir, "val")
        if not self.train_paths:
            raise FileNotFoundError(f"no train token shards (train-*.tar) in {token_dir}: the prior needs at least one "
                                    "train clip (see data/shard/ledger.parquet for what was rejected)")
        train_raw, val_raw = load_token_clips(self.train_paths), load_token_clips(self.val_paths)
        if not train_raw:
            raise ValueError(f"train token shards in {token_dir} hold no clips")
        first = train_raw[0]
        made_with = (int(first.meta.get("fps", timing.fps)), int(first.meta.get("sample_rate", timing.sample_rate)))
        if made_with != (timing.fps, timing.sample_rate):
            raise ValueError(f"tokens in {token_dir} were made at {made_with[0]} fps / {made_with[1]} Hz, params.yaml "
                             f"media says {timing.fps} / {timing.sample_rate}: rerun `dvc repro tokenize`")
        self.grid_h, self.grid_w, self.code_heads = (int(v) for v in first.codes.shape[1:])
        self.num_codes = _num_codes(train_raw + val_raw)
        self.n_mels = int(first.mel.shape[1])
        self.train = to_tensors(train_raw, n_episodes)
        self.val = to_tensors(val_raw, n_episodes)

    def dims(self, p: PriorParams, n_episodes: int) -> PriorDims:
        return prior_dims(p, grid_h=self.grid_h, grid_w=self.grid_w, code_heads=self.code_heads,
                          num_codes=self.num_codes, n_episodes=n_episodes, n_mels=self.n_mels)


def train_prior(p: PriorParams, timing: Timing, token_dir: Path, ckpt_dir: Path, report_dir: Path,
                episode_ids: list[str], *, stop_after: int | None = None) -> dict:
    """Train (or resume) the prior; return nested metrics {"val": {...}, "train": {...}}.

    `stop_after` ends this run after that global step without the final export (it
    simulates an interruption for tests)."""
    t_begin = time.time()
    token_dir = Path(token_dir)
    episode_ids = list(episode_ids)
    data = TokenData(token_dir, len(episode_ids), timing)
    group = join_process_group()
    try:
        dims = data.dims(p, len(episode_ids))
        ckpt = Checkpoints(ckpt_dir, run_fingerprint("prior", as_dict(p), data.train_paths + data.val_paths,
                                                     CODE_MODULES, episode_ids, resume_neutral=RESUME_NEUTRAL_KEYS),
                           group, "train_prior")
        torch.manual_seed(p.seed)
        model = Prior(dims).to(group.device)
        optimizer = adamw(decay_groups(model.named_parameters(), p.weight_decay, _decays), p.lr, (0.9, 0.95))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, p.steps, p.warmup_steps, p.min_lr_fraction))
        start = _resume_or_init(ckpt, model, optimizer, scheduler, p, token_dir)
        live = open_live(report_dir, group, resume=start > 0)
        if group.is_main:
            log.info("prior: %.2fM parameters, %d train / %d val clips, grid %dx%dx%d, %d codes, %d episodes, "
                     "device %s, world %d", sum(q.numel() for q in model.parameters()) / 1e6, len(data.train),
                     len(data.val), dims.grid_h, dims.grid_w, dims.code_heads, dims.num_codes, len(episode_ids),
                     group.device, group.world)
        state = lambda: dict(model=model.state_dict(), optimizer=optimizer.state_dict(),  # noqa: E731
                             scheduler=scheduler.state_dict(), dims=dims.to_dict())
        loop = StepLoop(p.steps, start, p.checkpoint_every, group, "train_prior", stop_after=stop_after,
                        save=lambda s, w: ckpt.save_last(s, w, state()))
        frames_seen = _run_steps(p, model, wrap_ddp(model, group), optimizer, scheduler, data.train, loop, live,
                                 t_begin, timing)
        train_s = loop.loop_s
        if loop.interrupted:
            if live is not None:
                live.end()
            return {"train": {"steps": loop.step}}
        metrics: dict = {}
        if group.is_main:
            ckpt.export(PRIOR_FILE, dict(dims=dims.to_dict(), state_dict=model.state_dict(), episode_ids=episode_ids,
                                         timing=dict(fps=timing.fps, sample_rate=timing.sample_rate), step=loop.step))
            metrics = _validate(p, model, data, loop, live, group, t_begin, frames_seen, train_s)
        group.barrier()
        return metrics
    finally:
        group.close()


def _resume_or_init(ckpt: Checkpoints, model: Prior, optimizer, scheduler, p: PriorParams, token_dir: Path) -> int:
    """The step to start from: a matching last.pt's, or 0 with the codebook-initialised model."""
    last = ckpt.resume()
    if last is not None:
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        return int(last["step"])
    if p.codebook_init:
        values = load_codebook(token_dir)
        if values is None:
            raise FileNotFoundError(f"prior.codebook_init is on but {token_dir} has no codebook.npy "
                                    "(tokens from an older tokenize stage): rerun `dvc repro tokenize`")
        model.init_from_codebook(torch.from_numpy(values))
    return 0


def _run_steps(p: PriorParams, model: Prior, ddp, optimizer, scheduler, clips: list[ClipTensors], loop: StepLoop,
               live, t_begin: float, timing: Timing) -> int:
    """The training steps; returns the frames seen (all ranks)."""
    group = loop.group
    device = group.device
    frames_seen = 0
    acc = dict(loss=0.0, correct=0.0, n=0, steps=0, kl=0.0, sync=0.0)
    model.train()
    for step in loop:
        rng = np.random.default_rng([p.seed, group.rank, step])
        codes, mel, ep = sample_batch(clips, p.batch_size, p.window_frames, rng, p.aug_tempo)
        noise_seed = int(rng.integers(0, 2**62))
        mel = augment_mel(mel, mel_augment(p), rng, timing)  # after the noise seed: off draws nothing
        codes, mel, ep = codes.to(device), mel.to(device), ep.to(device)
        gen = torch.Generator(device=device).manual_seed(noise_seed)
        with autocast(device):
            logits, aux = ddp(codes, mel, ep, prev_frame_dropout=p.prev_frame_dropout, code_noise=p.code_noise,
                              episode_dropout=p.episode_dropout, audio_dropout=p.audio_dropout, generator=gen,
                              return_aux=True)
        kl, sync = aux["kl"], aux["sync"]
        ce, weighted = changed_weighted_ce(logits, codes, p.changed_code_weight)
        loss = weighted + style_kl_term(kl, step, p, codes[0].numel()) + p.sync_weight * sync
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if p.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        optimizer.step()
        scheduler.step()
        frames_seen += codes.shape[0] * codes.shape[1] * group.world
        acc["loss"] += ce.item()
        acc["kl"] += kl.float().sum().item()
        acc["sync"] += sync.item()
        acc["steps"] += 1
        with torch.no_grad():
            acc["correct"] += (logits.argmax(-1) == codes).sum().item()
            acc["n"] += codes.numel()
        if group.is_main and loop.due(p.log_every):
            _log_train(live, loop, step + 1, acc, scheduler, t_begin)
            acc = dict(loss=0.0, correct=0.0, n=0, steps=0, kl=0.0, sync=0.0)
    return frames_seen


def _log_train(live, loop: StepLoop, done: int, acc: dict, scheduler, t_begin: float) -> None:
    mean_loss = acc["loss"] / acc["steps"]
    log_metrics(live, done, {
        "train/loss": mean_loss, "train/nll_bits_per_code": mean_loss / LN2,
        "train/code_accuracy": acc["correct"] / acc["n"],
        "train/kl": acc["kl"] / acc["steps"], "train/sync_loss": acc["sync"] / acc["steps"],
        "train/lr": scheduler.get_last_lr()[0]})
    live.log_metric("train/wall_s", time.time() - t_begin, plot=False)
    live.next_step()
    loop.bar.set_postfix(bits=f"{mean_loss / LN2:.3f}", acc=f"{acc['correct'] / acc['n']:.3f}")


def _validate(p: PriorParams, model: Prior, data: TokenData, loop: StepLoop, live, group: ProcessGroup,
              t_begin: float, frames_seen: int, train_s: float) -> dict:
    """Rank 0 after the last step: teacher-forced val figures (nwt.eval.nll) and the stage metrics."""
    unigram = unigram_log2p(data.train, data.code_heads, data.num_codes)
    windows = eval_windows(data.val, p.window_frames)
    val = evaluate(model, windows, p.batch_size, group.device, unigram)
    if not windows:  # null + why, not NaN
        val = {**{k: None for k in val}, "reason": NO_VAL}
    wall = time.time() - t_begin
    steps_here = loop.step - loop.start
    metrics = {"val": val, "train": {
        "steps": loop.step, "wall_s": wall,
        "frames_per_s": frames_seen / train_s if train_s > 0 and frames_seen else 0.0,
        "s_per_step": train_s / steps_here if steps_here > 0 else 0.0,
    }}
    log_metrics(live, loop.step, {f"val/{k}": v for k, v in val.items() if isinstance(v, float)}, plot=False)
    live.log_metric("train/wall_s", wall, plot=False)
    live.end()
    if windows:
        log.info("prior: %d steps, val %.3f bits/code (shuffled audio %.3f, unigram %.3f), accuracy %.3f, "
                 "kl %.2f nats, %.0f s", loop.step, val["nll_bits_per_code"], val["nll_shuffled_audio_bits_per_code"],
                 val["unigram_entropy_bits"], val["code_accuracy"], val["kl"], wall)
    metrics["warnings"] = report("train_prior", prior_warnings(val["nll_bits_per_code"], val["unigram_entropy_bits"],
                                                               val["nll_shuffled_audio_bits_per_code"]))
    return metrics
