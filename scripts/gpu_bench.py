"""One-command GPU benchmark of the models (no shards, no trained weights: random inputs).

    python scripts/gpu_bench.py                      # on one H100/H200, ≈ 1–3 minutes
    python scripts/gpu_bench.py --device cpu --tiny  # smoke test (CI), a few seconds

Measures, and merges into `reports/bench.json` under `gpu` → `<card name>`:
- dvae: training of the default dVAE (params.yaml `train_dvae` dims) at `--batch-size` frames of
  256×224 per step in bf16 autocast (as nwt.train.dvae trains on CUDA): L1 + MSE, fused AdamW,
  grad clipping; frames/s, ms/step and model FLOP utilisation (MFU). A shorter run with the
  multi-scale discriminator on (the second half of a real run) is timed too.
- prior / prior_paper: the FAR prior at the default size (4 layers × 256) and at a paper-sized
  one (24 layers × 768, 12 heads), trained with the training loss and its noise options on
  `window` frames per sample in bf16 autocast: frames/s and codes ("tokens", 16×14×2 per frame)
  per s, MFU; then sampling with the KV cache (`Prior.sample`, fp32 as nwt.generate runs it,
  and under bf16 autocast) + decoding the codes with the dVAE (`dvae_io.decode_codes`, as
  nwt.generate does): real-time factor = generated frames/s ÷ fps (> 1: faster than real time).
  `sampling_mar`: the same sampling figures for the MAR prior of the same size (`mode: mar`,
  its head at the params.yaml size: the codes of a frame one by one, 448 steps per frame) on
  `--mar-sample-frames` frames (fewer: it is far slower per frame).

FLOPs: `torch.utils.flop_counter.FlopCounterMode` around one whole training step's forward
*and* backward (the backward is counted by the mode itself, no ×3 rule); it counts matmuls,
convolutions and attention only (norms, activations and the optimizer are not counted), so MFU
is "model FLOPs" utilisation. MFU = counted FLOPs per step × steps/s ÷ the card's dense bf16
peak (H100 SXM / H200: 989.4 TFLOP/s; `--peak-tflops` overrides; unknown cards → null).
Inputs are random (smooth random frames for the dVAE, random codes and mels for the prior):
speed does not depend on the weights or the data. torch.compile is off unless `--compile`.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

from nwt.constants import MELS_PER_FRAME, N_MELS  # noqa: E402
from nwt.models.discriminator import MultiScaleDiscriminator, d_hinge_loss, feature_matching_loss, g_hinge_loss  # noqa: E402
from nwt.models.dvae import DVAE, DVAEDims  # noqa: E402
from nwt.models.dvae_io import decode_codes  # noqa: E402
from nwt.models.prior import Prior, PriorDims  # noqa: E402
from nwt.params import load_params, with_changes  # noqa: E402
from nwt.train.dvae import dvae_dims  # noqa: E402
from nwt.train.prior import prior_dims  # noqa: E402

OUT = REPO / "reports" / "bench.json"
N_EPISODES = 8  # embedding rows only: speed does not depend on it
# dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets), first substring match wins
PEAK_BF16_TFLOPS = (
    ("GH200", 989.4), ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
    ("H800", 989.4), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
)

# default dims: the params.yaml sections through the trainers' own builders (nwt.train.dvae.dvae_dims,
# nwt.train.prior.prior_dims), so the benchmark measures what `dvc repro` trains; paper-sized prior:
# the default at 24 layers × 768
PARAMS = load_params(REPO / "params.yaml")
FPS = PARAMS.media.fps
PRIOR_TRAIN_NOISE = dict(prev_frame_dropout=PARAMS.prior.prev_frame_dropout, code_noise=PARAMS.prior.code_noise,
                         episode_dropout=PARAMS.prior.episode_dropout)
PRIOR_PAPER = dict(layers=24, dim=768, heads=12, audio_layers=4)
# --tiny: small enough for a CPU smoke test in seconds (64×48 frames)
DVAE_TINY = dict(channels=8, max_mult=2, blocks=1, downsample=16, num_codes=16, heads=2, code_dim=16, episode_dim=8)
TINY_FRAME = dict(height=64, width=48)
PRIOR_TINY = dict(layers=1, dim=32, heads=2, audio_layers=1, audio_window=2, context_frames=8, code_dim=4,
                  spatial_dim=8)


def card_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def peak_tflops(name: str) -> float | None:
    return next((tf for key, tf in PEAK_BF16_TFLOPS if key.lower() in name.lower()), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, enabled: bool = True):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def adamw(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr)


def count_flops(fn) -> int:
    """FLOPs of matmuls/convs/attention in fn() (forward + backward if fn does both)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for `steps` calls of step() after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - start


def utilisation(flops_per_step: int, seconds: float, steps: int, peak: float | None) -> dict:
    achieved = flops_per_step * steps / seconds / 1e12
    return dict(flops_per_step=flops_per_step, achieved_tflops=round(achieved, 3),
                mfu=round(achieved / peak, 4) if peak else None)


def smooth_frames(batch: int, height: int, width: int, device: torch.device, generator: torch.Generator
                  ) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1]: random colours bilinearly upsampled 16× (image-like, not white noise)."""
    coarse = torch.rand(batch, 3, max(1, height // 16), max(1, width // 16), generator=generator, device=device)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False) * 2 - 1


def memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


# ------------------------------------------------------------------------------------ dVAE
def bench_dvae(dims: DVAEDims, batch: int, steps: int, adv_steps: int, device: torch.device, peak: float | None,
               compile_model: bool) -> tuple[dict, DVAE]:
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    model = DVAE(dims).to(device).train()
    disc = MultiScaleDiscriminator(2, 16).to(device)
    opt_g, opt_d = adamw(model.parameters(), 2e-3, device), adamw(disc.parameters(), 2e-4, device)
    x = smooth_frames(batch, dims.height, dims.width, device, gen)  # (B, 3, H, W)
    ep = torch.randint(0, dims.n_episodes + 1, (batch,), generator=gen, device=device)
    fwd = torch.compile(model) if compile_model else model

    def recon_loss(net):
        with autocast(device):
            recon, _, _ = net(x, ep)
            recon = recon.float()
            return recon, (recon - x).abs().mean() + F.mse_loss(recon, x)

    def step():
        _, loss = recon_loss(fwd)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt_g.step()

    def adv_step():  # generator with hinge + feature matching, then the discriminator (nwt.train.dvae)
        with autocast(device):
            recon, loss = recon_loss(fwd)
            real_out = disc(x)
            disc.requires_grad_(False)
            fake_out = disc(recon)
            loss = loss + 0.1 * (g_hinge_loss(fake_out) + feature_matching_loss(real_out, fake_out))
            disc.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt_g.step()
        with autocast(device):
            d_loss = d_hinge_loss(real_out, disc(recon.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    flops = count_flops(lambda: recon_loss(model)[1].backward())  # eager model: the same graph
    opt_g.zero_grad(set_to_none=True)
    warm = min(10, max(1, steps // 10))
    seconds = time_steps(step, steps, warm, device)
    out = dict(params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 3), dims=asdict(dims),
               batch_size=batch, steps=steps, wall_s=round(seconds, 3), ms_per_step=round(1e3 * seconds / steps, 3),
               frames_per_s=round(steps * batch / seconds, 1), flops_per_frame=flops // batch,
               **utilisation(flops, seconds, steps, peak), peak_memory_gib=memory_gib(device))
    if adv_steps:
        adv_s = time_steps(adv_step, adv_steps, max(1, min(5, adv_steps // 5)), device)
        out["with_discriminator"] = dict(steps=adv_steps, ms_per_step=round(1e3 * adv_s / adv_steps, 3),
                                         frames_per_s=round(adv_steps * batch / adv_s, 1))
    print(f"dvae: {out['params_m']}M params, batch {batch}: {out['frames_per_s']} frames/s "
          f"({out['ms_per_step']} ms/step), {out['achieved_tflops']} TFLOP/s, MFU {out['mfu']}", flush=True)
    return out, model.eval()


# ------------------------------------------------------------------------------------ prior
def bench_prior(name: str, dims: PriorDims, dvae: DVAE, batch: int, window: int, steps: int, sample_frames: int,
                device: torch.device, peak: float | None, compile_model: bool, mar_sample_frames: int = 0) -> dict:
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    model = Prior(dims).to(device).train()
    opt = adamw(model.parameters(), 3e-3, device)
    shape = (batch, window, dims.grid_h, dims.grid_w, dims.code_heads)
    codes = torch.randint(0, dims.num_codes, shape, generator=gen, device=device)
    mel = torch.randn(batch, MELS_PER_FRAME * window, dims.n_mels, generator=gen, device=device)
    ep = torch.randint(0, dims.n_episodes + 1, (batch,), generator=gen, device=device)
    fwd = torch.compile(model) if compile_model else model

    def loss_of(net):
        with autocast(device):
            logits, aux = net(codes, mel, ep, generator=gen, return_aux=True, **PRIOR_TRAIN_NOISE)
        return model.loss(logits, codes) + aux["sync"]  # fp32 cross-entropy + the sync loss (its weight costs nothing)

    def step():
        loss = loss_of(fwd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    flops = count_flops(lambda: loss_of(model).backward())
    opt.zero_grad(set_to_none=True)
    seconds = time_steps(step, steps, min(10, max(1, steps // 10)), device)
    frames = steps * batch * window
    codes_per_frame = dims.positions * dims.code_heads
    out = dict(params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 3), dims=asdict(dims),
               batch_size=batch, window_frames=window, steps=steps, wall_s=round(seconds, 3),
               ms_per_step=round(1e3 * seconds / steps, 3), frames_per_s=round(frames / seconds, 1),
               tokens_per_s=round(frames * codes_per_frame / seconds, 1), tokens="codes (grid × heads per frame)",
               **utilisation(flops, seconds, steps, peak), peak_memory_gib=memory_gib(device))
    print(f"{name}: {out['params_m']}M params, batch {batch}×{window} frames: {out['frames_per_s']} frames/s = "
          f"{out['tokens_per_s']:.3g} codes/s ({out['ms_per_step']} ms/step), MFU {out['mfu']}", flush=True)

    # sampling (KV cache) + dVAE decode of the sampled codes → real-time factor
    model.eval()
    sample_mel = torch.randn(MELS_PER_FRAME * sample_frames, dims.n_mels, generator=gen, device=device)
    decode_codes(dvae, np.zeros((2, dims.grid_h, dims.grid_w, dims.code_heads), np.uint16), 0)  # warm-up
    out["sampling"] = bench_sampling(name, model, dvae, sample_mel, sample_frames, device)
    if mar_sample_frames:  # the MAR prior of the same size (untrained, like the FAR one here)
        torch.manual_seed(0)
        mar = Prior(PriorDims(**{**asdict(dims), "mode": "mar"})).to(device).eval()
        out["sampling_mar"] = dict(
            bench_sampling(f"{name} MAR", mar, dvae, sample_mel[: MELS_PER_FRAME * mar_sample_frames],
                           mar_sample_frames, device),
            params_m=round(sum(p.numel() for p in mar.parameters()) / 1e6, 3),
            mar_dims=dict(mar_layers=dims.mar_layers, mar_dim=dims.mar_dim, mar_heads=dims.mar_heads))
    return out


def bench_sampling(name: str, model: Prior, dvae: DVAE, sample_mel: torch.Tensor, sample_frames: int,
                   device: torch.device) -> dict:
    """Per precision: `Prior.sample` of `sample_frames` frames, then the dVAE decode → RTF."""
    out = {}
    variants = (("fp32", False), ("bf16_autocast", True)) if device.type == "cuda" else (("fp32", False),)
    for label, amp in variants:
        with autocast(device, amp):
            model.sample(sample_mel[: MELS_PER_FRAME * 4], episode_index=0, seed=0)  # warm-up
            sync(device)
            t0 = time.perf_counter()
            sampled = model.sample(sample_mel, episode_index=0, temperature=1.0, seed=0)
            sync(device)
            t1 = time.perf_counter()
        decoded = decode_codes(dvae, sampled.cpu().numpy().astype(np.uint16), 0)  # fp32, as nwt.generate
        t2 = time.perf_counter()
        assert decoded.shape[0] == sample_frames
        s = dict(frames=sample_frames, sample_s=round(t1 - t0, 3), decode_s=round(t2 - t1, 3),
                 codes_frames_per_s=round(sample_frames / (t1 - t0), 2),
                 frames_per_s_with_decode=round(sample_frames / (t2 - t0), 2),
                 rtf=round(sample_frames / (t2 - t0) / FPS, 3),
                 rtf_without_decode=round(sample_frames / (t1 - t0) / FPS, 3))
        out[label] = s
        print(f"{name} sampling ({label}): {s['codes_frames_per_s']} code-frames/s, "
              f"RTF {s['rtf']} with dVAE decode ({s['rtf_without_decode']} without)", flush=True)
    return out


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300,
                        help="timed dVAE training steps (prior: half, paper prior: a third)")
    parser.add_argument("--batch-size", type=int, default=32, help="dVAE frames per step and prior windows per step")
    parser.add_argument("--window", type=int, default=50, help="prior training window (frames)")
    parser.add_argument("--sample-frames", type=int, default=250,
                        help="frames the prior samples for the RTF (10 s at 25 fps)")
    parser.add_argument("--mar-sample-frames", type=int, default=25,
                        help="frames the MAR prior samples for its RTF (0: skip MAR; default 1 s)")
    parser.add_argument("--tiny", action="store_true", help="tiny dims (CPU smoke test)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models' training forward")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="dense bf16 peak of the card (default: by name)")
    parser.add_argument("--skip-paper-prior", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return run(args, parser)
    finally:
        torch.set_num_threads(threads_before)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    t_start = time.perf_counter()
    name = card_name(device)
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    print(f"device: {name}; bf16 dense peak: {peak} TFLOP/s; torch {torch.__version__}", flush=True)

    if args.tiny:
        dims = replace(dvae_dims(with_changes(PARAMS.train_dvae, **DVAE_TINY), N_EPISODES), **TINY_FRAME)
    else:
        dims = dvae_dims(PARAMS.train_dvae, N_EPISODES)
    steps = max(1, args.steps)
    dvae_out, dvae = bench_dvae(dims, args.batch_size, steps, max(1, steps // 6), device, peak, args.compile)

    grid = dict(grid_h=dims.grid[0], grid_w=dims.grid[1], code_heads=dims.heads,
                num_codes=dims.num_codes, n_episodes=N_EPISODES, n_mels=N_MELS)
    window = min(args.window, 8) if args.tiny else args.window
    sample_frames = min(args.sample_frames, 6) if args.tiny else args.sample_frames
    mar_frames = min(args.mar_sample_frames, sample_frames)
    if args.tiny:
        mar_frames = min(mar_frames, 2)
    priors = [("prior", PRIOR_TINY if args.tiny else {}, max(1, steps // 2))]
    if not args.skip_paper_prior:
        paper = dict(PRIOR_TINY, layers=3) if args.tiny else PRIOR_PAPER
        priors.append(("prior_paper", paper, max(1, steps // 3)))
    result = dict(
        device=name, torch=torch.__version__, cuda=torch.version.cuda, peak_bf16_tflops=peak,
        precision="bf16 autocast (CUDA); fp32 on CPU", compiled=bool(args.compile), tiny=bool(args.tiny),
        flops_counted="FlopCounterMode over one training step's forward + backward (matmul/conv/attention only)",
        dvae=dvae_out,
    )
    for key, kw, n in priors:
        prior = prior_dims(with_changes(PARAMS.prior, **kw), **grid)
        result[key] = bench_prior(key, prior, dvae, args.batch_size, window, n, sample_frames, device, peak,
                                  args.compile, mar_frames)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S")

    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.setdefault("gpu", {})[name] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out} (gpu → {name!r}) in {result['wall_s']} s", flush=True)
    return 0


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
