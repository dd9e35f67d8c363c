"""Train the sync expert (nwt.models.sync_expert) on the train split, resumably.

Data: every train clip's mouth crops (grey, `height`×`width`: 1.3 KB a frame at 32×40, ≈120 MB
per hour of video) and log-mel are held in memory; the clips are decoded once, one at a time.

Objective: symmetric InfoNCE over a batch of 5-frame windows. A batch is `batch_size //
anchors_per_clip` groups; a group is `anchors_per_clip` windows of one clip spaced `min_offset`
to `min_offset + spacing_jitter` frames apart. Every video window is scored (cosine ×
`logit_scale`) against every audio window of the batch and vice versa; the true partner is the
in-sync one, the others are the same clip's audio shifted by ≥ `min_offset` frames (hard
negatives: same look, same voice) and other clips' audio. Pairs of the same clip closer than
`min_offset` frames are masked out. Each step draws its batch from a generator seeded by
(seed, step), so a resumed run computes the same steps as an uninterrupted one.

Metrics (all on windows of 5 frames, distances as LSE uses them):
- `{split}.accuracy`: balanced binary accuracy at telling the in-sync audio window from one
  shifted by a random k with min_offset ≤ |k| ≤ 15 frames (same clip), one pair of each per
  window; the distance threshold is the one that maximises the same accuracy on train clips.
- `{split}.offset_recovery_rate`: each clip's audio advanced by k frames, k in ±1 … ±10: the
  share of (clip, k) whose syncnet AV offset (nwt.eval.lipsync) is within ±1 frame of k.
- `{split}.accuracy_speech`: the same on the pairs whose anchor window holds speech (loudest
  frame within 30 dB of the clip's loudest). A closed mouth over silence matches silence shifted
  by any offset equally well, so pairs of two silent windows cannot be told apart by anyone;
  `speech_share` says how many pairs are left.
- `{split}.lse_d`, `{split}.lse_c`: mean over the split's (unshifted) clips.
Splits: val (the issue's figures), test and unseen (whole held-out episodes) when present.

Resume (docs/design.md, nwt.train.loop): every `checkpoint_every` steps `ckpt_dir/last.pt` holds
model, optimizer, scheduler, step, RNG states and a fingerprint of the params (all but
RESUME_NEUTRAL_KEYS) and the train shards. The result is `ckpt_dir/sync.pt` =
{dims, state_dict, fingerprint, step, timing} (torch.load(weights_only=True); see
nwt.models.sync_expert.load_sync_expert).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nwt.constants import Timing
from nwt.data.shards import iter_clips, shard_paths
from nwt.eval.judge import SyncClip, evaluate_split, sync_clips, train_threshold
from nwt.geometry import sync_mouth_box
from nwt.models.sync_expert import SyncDims, SyncExpert
from nwt.models.voice_aug import MelAugment, augment_mel
from nwt.params import FacesParams, TrainSyncParams, as_dict
from nwt.train.common import adamw, lr_factor
from nwt.train.learning_warnings import report, sync_warnings
from nwt.train.loop import (
    Checkpoints,
    StepLoop,
    decay_groups,
    join_process_group,
    log_metrics,
    open_live,
    run_fingerprint,
)

log = logging.getLogger(__name__)

# the code that shapes a checkpoint: a change to any of these starts training afresh
CODE_MODULES = ("nwt.models.sync_expert", "nwt.models.voice_aug", "nwt.train.sync", "nwt.train.common",
                "nwt.train.loop")

# changing these does not change what a training step computes
RESUME_NEUTRAL_KEYS = ("steps", "checkpoint_every", "log_every", "eval_batch_size", "shift_range", "recover_tolerance")
SYNC_FILE = "sync.pt"
EVAL_SPLITS = ("val", "test", "unseen")
NO_SPLIT = {"val": "no val clips (every episode has fewer than 5 clips, or shard.val_fraction: 0)",
            "test": "no test clips (every episode has fewer than 5 clips, or shard.test_fraction: 0)",
            "unseen": "no unseen episode in this corpus (one episode, or shard.unseen_episodes: 0)"}


def _load(paths: list[str], dims: SyncDims, timing: Timing, margin: int = 0) -> list[SyncClip]:
    return sync_clips(iter_clips(paths), dims, timing, margin)


def sample_batch(clips: list[SyncClip], p: TrainSyncParams, rng: np.random.Generator, dims: SyncDims,
                 timing: Timing):
    """→ video (B, 5, h, w) float 0–255, audio (B, 20, n_mels), clip index (B,), window start (B,).

    Augmentation (per window, from `rng`): the mouth box shifted by up to ±aug_shift_px (the
    train crops carry that margin), grey levels scaled by 1 ± aug_contrast about mid-grey and
    offset by ± aug_brightness × 255; degraded like a decoder's output: a Gaussian blur of
    σ ~ U(0, aug_blur_sigma) px (at the mouth box's resolution) and grey-level noise of σ ~
    U(0, aug_noise) levels, each window its own; the log-mel offset by ± aug_audio_gain (0.25 =
    10 dB) and up to aug_freq_mask adjacent mel bins set to the window's mean. Voice augmentation
    first (nwt.models.voice_aug, the presenter's one voice made many): frequency warp ± aug_mel_warp,
    smooth EQ ± aug_mel_eq, a noise floor aug_mel_noise … 2 log-mel units below the peak, a room's
    reverberant tail of RT60 up to aug_reverb s."""
    groups = max(1, p.batch_size // p.anchors_per_clip)
    lengths = np.array([c.windows for c in clips], np.float64)
    mpf, w = dims.mels_per_frame, dims.window
    m = p.aug_shift_px
    video, audio, cid, start = [], [], [], []
    for ci in rng.choice(len(clips), size=groups, p=lengths / lengths.sum()):
        c = clips[ci]
        spacing = p.min_offset + int(rng.integers(0, p.spacing_jitter + 1))
        n = min(p.anchors_per_clip, (c.windows - 1) // spacing + 1)
        t0 = int(rng.integers(0, c.windows - (n - 1) * spacing))
        for j in range(n):
            t = t0 + j * spacing
            dy, dx = (int(v) for v in rng.integers(0, 2 * m + 1, 2))
            video.append(c.mouth[t : t + w, dy : dy + dims.height, dx : dx + dims.width])
            audio.append(c.mel[t * mpf : (t + w) * mpf])
            cid.append(ci)
            start.append(t)
    video = torch.stack(video).float()  # (B, 5, h, w)
    audio = torch.stack(audio).clone()  # (B, 20, n_mels)
    b = video.shape[0]
    contrast = 1 + p.aug_contrast * rng.uniform(-1, 1, b)
    bright = 255 * p.aug_brightness * rng.uniform(-1, 1, b)
    video = ((video - 127.5) * torch.tensor(contrast, dtype=torch.float32)[:, None, None, None]
             + 127.5 + torch.tensor(bright, dtype=torch.float32)[:, None, None, None]).clamp(0, 255)
    if p.aug_blur_sigma > 0:
        video = blur_windows(video, p.aug_blur_sigma * rng.uniform(0, 1, b))
    if p.aug_noise > 0:
        noise_sd = torch.tensor(p.aug_noise * rng.uniform(0, 1, b), dtype=torch.float32)
        noise = torch.from_numpy(rng.standard_normal(video.shape).astype(np.float32))
        video = (video + noise * noise_sd[:, None, None, None]).clamp(0, 255)
    voice = MelAugment(p.aug_mel_warp, p.aug_mel_eq, 0.0, p.aug_mel_noise, p.aug_reverb)
    audio = augment_mel(audio, voice, rng, timing)
    audio += torch.tensor(p.aug_audio_gain * rng.uniform(-1, 1, b), dtype=torch.float32)[:, None, None]
    fm = p.aug_freq_mask
    if fm > 0:
        widths = rng.integers(0, fm + 1, b)
        lows = rng.integers(0, audio.shape[2] - widths + 1)
        for i in range(b):
            if widths[i]:
                audio[i, :, lows[i] : lows[i] + widths[i]] = audio[i].mean()
    return video, audio, torch.tensor(cid), torch.tensor(start)


def blur_windows(video: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """Gaussian-blur each window (B, 5, h, w) with its own σ (B,) in pixels (σ < 0.05: unchanged)."""
    b, t, h, w = video.shape
    radius = max(1, int(np.ceil(3 * float(sigmas.max()))))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = torch.tensor(np.maximum(sigmas, 0.05), dtype=torch.float32)[:, None]
    k = torch.exp(-0.5 * (x[None] / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1), a delta where σ is tiny
    k = k.repeat_interleave(t, 0)  # (B·5, 2r+1): one kernel per frame, grouped convolution
    y = F.pad(video.reshape(1, b * t, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * t)  # rows
    y = F.conv2d(y, k[:, None, :, None], groups=b * t)  # columns
    return y.reshape(b, t, h, w)


def contrastive_loss(ev: torch.Tensor, ea: torch.Tensor, cid: torch.Tensor, start: torch.Tensor,
                     logit_scale: float, min_offset: int, bce_weight: float = 0.0,
                     bce_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE; same-clip pairs closer than min_offset (other than the diagonal) masked.
    With bce_weight > 0, plus SyncNet-style binary cross-entropy on sigmoid(scale·cos + bias):
    the in-sync pairs against the same clip's shifted pairs (class-balanced)."""
    cos = ev @ ea.T  # (B, B)
    same = cid[:, None] == cid[None]
    near = (start[:, None] - start[None]).abs() < min_offset
    eye = torch.eye(len(cid), dtype=torch.bool)
    logits = (logit_scale * cos).masked_fill(same & near & ~eye, float("-inf"))
    target = torch.arange(len(cid))
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    if bce_weight > 0:
        z = logit_scale * cos + (bce_bias if bce_bias is not None else 0.0)
        neg = same & ~near
        pos_loss = F.softplus(-z[eye]).mean()
        neg_loss = F.softplus(z[neg]).mean() if bool(neg.any()) else z.new_zeros(())
        loss = loss + bce_weight * 0.5 * (pos_loss + neg_loss)
    acc = (logits.argmax(1) == target).float().mean().item()
    return loss, acc


# ---------------------------------------------------------------- entry point
def sync_dims(p: TrainSyncParams, faces: FacesParams) -> SyncDims:
    """The SyncDims of a `train_sync` params section; the mouth box follows the `faces` framing."""
    rows, cols = sync_mouth_box(faces.face_scale, faces.centre_shift)
    return SyncDims(height=p.height, width=p.width, channels=p.channels, audio_channels=p.audio_channels,
                    embed_dim=p.embed_dim, dropout=p.dropout, crop_rows=rows, crop_cols=cols)


def train_sync(p: TrainSyncParams, timing: Timing, shard_dir: Path, ckpt_dir: Path, report_dir: Path, *,
               faces: FacesParams, stop_after: int | None = None) -> dict:
    """Train (or resume) the sync expert on `shard_dir`'s train split; write `ckpt_dir/sync.pt`;
    return {"val": {accuracy, offset_recovery_rate, …}, "test": …, "unseen": …, "train": {steps,
    wall_s, accuracy, threshold, …}}. `faces`: the params the shards were framed with (they set
    the mouth box). `stop_after` ends the run after that step without export (simulates an
    interruption for tests). One process on the CPU (the model is small)."""
    t_begin = time.time()
    shard_dir = Path(shard_dir)
    train_paths = shard_paths(shard_dir, "train")
    if not train_paths:
        raise FileNotFoundError(f"no train shards (train-*.tar) in {shard_dir}")
    dims = sync_dims(p, faces)  # the shards' framing sets the mouth box
    group = join_process_group("cpu", distributed=False)
    ckpt = Checkpoints(ckpt_dir, run_fingerprint("sync", as_dict(p), train_paths, CODE_MODULES,
                                                 dict(fps=timing.fps, sample_rate=timing.sample_rate),
                                                 resume_neutral=RESUME_NEUTRAL_KEYS), group, "train_sync")
    t_load = time.time()
    train_clips = _load(train_paths, dims, timing, margin=p.aug_shift_px)
    if not train_clips:
        raise ValueError(f"train shards in {shard_dir} hold no clip long enough for a sync window")
    log.info("sync: %d train clips (%d windows) loaded in %.1f s", len(train_clips),
             sum(c.windows for c in train_clips), time.time() - t_load)

    torch.manual_seed(p.seed)
    model = SyncExpert(dims)
    bce_bias = torch.nn.Parameter(torch.zeros(()))  # the BCE term's logit offset (training only)
    groups = decay_groups([*model.named_parameters(), ("bce_bias", bce_bias)], p.weight_decay, lambda n, q: q.ndim >= 2)
    optimizer = adamw(groups, p.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, p.steps, p.warmup_steps, p.min_lr_fraction))
    start = 0
    last = ckpt.resume()
    if last is not None:
        model.load_state_dict(last["model"])
        bce_bias.data.copy_(last["bce_bias"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        start = int(last["step"])
    del last
    live = open_live(report_dir, group, resume=start > 0)
    log.info("sync expert: %.2fM parameters, dims %s", sum(q.numel() for q in model.parameters()) / 1e6, dims.to_dict())
    state = lambda: dict(model=model.state_dict(), bce_bias=bce_bias.detach().clone(),  # noqa: E731
                         optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), dims=dims.to_dict())
    loop = StepLoop(p.steps, start, p.checkpoint_every, group, "train_sync", stop_after=stop_after,
                    save=lambda s, w: ckpt.save_last(s, w, state()))
    _run_steps(p, model, bce_bias, optimizer, scheduler, train_clips, dims, loop, live, t_begin, timing)
    if loop.interrupted:
        live.end()
        return {"train": {"steps": loop.step}}
    train_s = loop.loop_s
    metrics, train_acc, threshold, eval_s = _evaluate(p, model, train_clips, dims, timing, shard_dir)
    # the threshold travels with the weights: nwt.eval.judge scores other clips exactly as the splits here
    ckpt.export(SYNC_FILE, dict(dims=dims.to_dict(), state_dict=model.state_dict(), step=loop.step,
                                timing=dict(fps=timing.fps, sample_rate=timing.sample_rate), threshold=threshold))
    wall = time.time() - t_begin
    steps_here = loop.step - loop.start
    metrics["train"] = dict(steps=loop.step, wall_s=wall, accuracy=train_acc, threshold=threshold,
                            s_per_step=train_s / steps_here if steps_here else 0.0, eval_s=eval_s)
    for split in EVAL_SPLITS:
        log_metrics(live, loop.step, {f"{split}/{k}": v for k, v in metrics[split].items()
                                      if isinstance(v, (int, float))}, plot=False)
    live.log_metric("train/wall_s", wall, plot=False)
    live.end()
    v = {k: float("nan") if x is None else x for k, x in metrics["val"].items()}  # no val split: nan in the log
    log.info("sync: %d steps in %.0f s; val accuracy %.3f, offset recovery %.3f, LSE-D %.3f, LSE-C %.3f",
             loop.step, wall, v["accuracy"], v["offset_recovery_rate"], v.get("lse_d", float("nan")),
             v.get("lse_c", float("nan")))
    metrics["warnings"] = report("train_sync", sync_warnings(train_acc, metrics["val"]["accuracy"]))
    return metrics


def _run_steps(p: TrainSyncParams, model: SyncExpert, bce_bias, optimizer, scheduler, clips: list[SyncClip],
               dims: SyncDims, loop: StepLoop, live, t_begin: float, timing: Timing) -> None:
    acc_loss, acc_acc, acc_n = 0.0, 0.0, 0
    model.train()
    for step in loop:
        rng = np.random.default_rng([p.seed, step])
        video, audio, cid, start = sample_batch(clips, p, rng, dims, timing)
        loss, acc = contrastive_loss(model.forward_video(video), model.forward_audio(audio), cid, start,
                                     p.logit_scale, p.min_offset, p.bce_weight, bce_bias)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if p.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + [bce_bias], p.grad_clip)
        optimizer.step()
        scheduler.step()
        acc_loss, acc_acc, acc_n = acc_loss + loss.item(), acc_acc + acc, acc_n + 1
        if loop.due(p.log_every):
            log_metrics(live, step + 1, {"train/loss": acc_loss / acc_n, "train/batch_accuracy": acc_acc / acc_n,
                                         "train/lr": scheduler.get_last_lr()[0]})
            live.log_metric("train/wall_s", time.time() - t_begin, plot=False)
            live.next_step()
            loop.bar.set_postfix(loss=f"{acc_loss / acc_n:.3f}", acc=f"{acc_acc / acc_n:.3f}")
            acc_loss, acc_acc, acc_n = 0.0, 0.0, 0


def _evaluate(p: TrainSyncParams, model: SyncExpert, train_clips: list[SyncClip], dims: SyncDims, timing: Timing,
              shard_dir: Path) -> tuple[dict, float, float, float]:
    """(every eval split's figures, the train clips' accuracy, the distance threshold that gives
    it, seconds taken): the threshold is chosen on the train clips, then applied to each split."""
    model.eval()
    t_eval = time.time()
    if p.aug_shift_px:  # centre crops, as the evaluation sees them
        m = p.aug_shift_px
        train_clips = [SyncClip(c.key, c.mouth[:, m : m + dims.height, m : m + dims.width], c.mel, c.loudness)
                       for c in train_clips]
    threshold, train_acc = train_threshold(model, train_clips, p, p.seed)
    metrics: dict = {}
    for split in EVAL_SPLITS:
        paths = shard_paths(shard_dir, split)
        if not paths:
            continue
        clips = _load(paths, dims, timing)
        if clips:
            metrics[split] = evaluate_split(model, clips, threshold, p, p.seed)
    for split in EVAL_SPLITS:  # a split this corpus lacks: null + why (never NaN)
        if split not in metrics:
            metrics[split] = dict(accuracy=None, offset_recovery_rate=None, reason=NO_SPLIT[split])
    return metrics, train_acc, threshold, time.time() - t_eval
