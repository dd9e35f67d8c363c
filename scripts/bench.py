"""Benchmarks (`make bench`): figures printed and merged into reports/bench.json.

Sections (all by default, or `--only NAME ...`):
- preprocess: shots+faces+segment+shard throughput (video-seconds per wall-second) on rendered
  synthetic episodes with NWT_WORKERS=1 and 2, and whether both give identical tables;
  the loader's random 256×224 frames per second (nwt.data.shards.random_frames) is measured on
  the shards it writes;
- prior_sampling: `Prior.sample` at the params.yaml size (grid from `train_dvae`), FAR and MAR
  side by side: code-frames per second and real-time factor (÷ fps) of sampling alone; the dVAE
  decode of those frames (params.yaml dims) timed on its own, and FAR's real-time factor with the
  decode included (what `nwt generate` does); FAR's KV-cached sampler against an uncached one
  that reruns the teacher-forced forward over the last `context_frames` frames for every new
  frame (the same arithmetic a sampler without a cache must do); FAR with the default
  `evaluate.guidance` (two rows per frame, `far_guided`). Random weights and mel (speed
  does not depend on them), one intra-op thread as nwt.generate samples on CPU;
- dvae_train_step: seconds per joint-phase dVAE training step (forward, L1 + MSE, backward, AdamW;
  no critic) at the params.yaml dims, batch and window, in fp32, under CPU bf16 autocast, and
  bf16 with channels-last tensors (what `train_dvae` runs with `cpu_bf16`), on all threads.
Speed goals live here, never in timed tests. `--only prior_sampling --frames N` runs one short
section.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "bench.json"
PRE_STAGES = ("shots", "faces", "segment", "shard")


def machine() -> dict:
    import torch

    return dict(cpu_count=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.machine()})")


def bench_preprocess(episodes: int = 2, seconds: float = 30.0) -> dict:
    import pandas as pd
    import yaml

    from nwt.data.synthetic import SyntheticConfig, render_episode
    from nwt.params import load_params

    p = load_params(REPO / "params.yaml")
    work = Path(tempfile.mkdtemp(prefix="nwt-bench-"))
    try:
        src = work / "src"
        for i in range(episodes):
            render_episode(f"bench-{i}", 100 + i, seconds, src,
                           SyntheticConfig.from_params(p.media, p.download.synthetic))
        manifest = "episode_id,source\n" + "".join(f"bench-{i},{src}/bench-{i}.mp4\n" for i in range(episodes))
        result, tables = {}, {}
        for workers in (1, 2):
            run = work / f"w{workers}"
            shutil.copytree(REPO / "pipeline", run / "pipeline")
            params = yaml.safe_load((REPO / "params.yaml").read_text())
            params["download"].update(source="manifest", manifest=str(run / "manifest.csv"))
            params["shard"]["unseen_episodes"] = 0
            (run / "params.yaml").write_text(yaml.safe_dump(params))
            (run / "manifest.csv").write_text(manifest)
            env = dict(os.environ, NWT_WORKERS=str(workers), RAY_AUTH_MODE="disabled")
            subprocess.run([sys.executable, "pipeline/download.py"], cwd=run, env=env, check=True, capture_output=True)
            start = time.perf_counter()
            stage_s = {}
            for stage in PRE_STAGES:
                t0 = time.perf_counter()
                subprocess.run([sys.executable, f"pipeline/{stage}.py"], cwd=run, env=env, check=True,
                               capture_output=True)
                stage_s[stage] = round(time.perf_counter() - t0, 2)
            wall = time.perf_counter() - start
            result[f"workers_{workers}"] = dict(wall_s=round(wall, 2), stage_wall_s=stage_s,
                                                video_s_per_wall_s=round(episodes * seconds / wall, 3))
            tables[workers] = [pd.read_parquet(run / f"data/{s}/{f}") for s, f in
                               (("shots", "shots.parquet"), ("faces", "tracks.parquet"), ("segment", "clips.parquet"))]
            print(f"preprocess, {workers} worker(s): {episodes * seconds:.0f} video-s in {wall:.1f} s "
                  f"→ {episodes * seconds / wall:.2f} video-s per wall-s  {stage_s}")
        result["identical_tables_1_vs_2_workers"] = all(a.equals(b) for a, b in zip(tables[1], tables[2]))
        result["video_s"] = episodes * seconds
        result["note"] = "includes Ray start-up (≈5 s) in every stage"
        bench_loader.shards = work / "w2" / "data" / "shards"
        result["loader"] = bench_loader()
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_loader(batches: int = 60, batch_size: int = 8) -> dict:
    from nwt.data.shards import random_frames, shard_paths
    from nwt.params import load_params

    shards = getattr(bench_loader, "shards", REPO / "data" / "shards")
    paths = shard_paths(shards, "train")
    if not paths:
        return dict(skipped=f"no train shards in {shards}")
    buffer = load_params(REPO / "params.yaml").train_dvae.shuffle_buffer
    it = random_frames(paths, batch_size, seed=0, buffer_size=buffer)
    next(it)  # fill the shuffle buffer once
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    fps = batches * batch_size / (time.perf_counter() - start)
    print(f"loader: {fps:.0f} random 256×224 frames/s (batch {batch_size})")
    return dict(frames_per_s=round(fps, 1), batch_size=batch_size)


def bench_prior_sampling(frames: int = 50, modes: tuple[str, ...] = ("far", "mar")) -> dict:
    """Frames/s and RTF of `Prior.sample` for `frames` frames in each mode, at the params.yaml size."""
    import torch

    from nwt.constants import CROP_H, CROP_W, N_MELS
    from nwt.models.prior import Prior
    from nwt.params import load_params, with_changes
    from nwt.train.prior import prior_dims

    params = load_params(REPO / "params.yaml")
    cfg, dvae, fps = params.prior, params.train_dvae, params.media.fps
    grid = dict(grid_h=CROP_H // dvae.downsample, grid_w=CROP_W // dvae.downsample, code_heads=dvae.heads,
                num_codes=dvae.num_codes, n_episodes=8, n_mels=N_MELS)
    mel = torch.randn(4 * frames, N_MELS, generator=torch.Generator().manual_seed(0))
    result = dict(frames=frames, fps=fps, note="sampling only (no dVAE decode), random weights, 1 thread")

    def prior_at(mode: str) -> Prior:  # the params.yaml size, random weights, seed 0
        torch.manual_seed(0)
        return Prior(prior_dims(with_changes(cfg, mode=mode), **grid)).eval()

    for mode in modes:
        model = prior_at(mode)
        model.sample(mel[:8], 0, seed=0)  # warm-up (2 frames)
        start = time.perf_counter()
        codes = model.sample(mel, 0, temperature=1.0, seed=0)
        wall = time.perf_counter() - start
        assert codes.shape[0] == frames
        fps_sampled = frames / wall
        result[mode] = dict(wall_s=round(wall, 3), frames_per_s=round(fps_sampled, 2), rtf=round(fps_sampled / fps, 3),
                            codes_per_s=round(fps_sampled * codes[0].numel(), 1),
                            params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2))
        print(f"prior sampling ({mode}): {fps_sampled:.2f} frames/s, RTF {fps_sampled / fps:.3f} "
              f"({frames} frames, {codes[0].numel()} codes each)")
    if "far" in result and "mar" in result:
        result["mar_slowdown"] = round(result["far"]["frames_per_s"] / result["mar"]["frames_per_s"], 1)
    if "far" in modes:
        model = prior_at("far")
        start = time.perf_counter()
        sample_uncached(model, mel, frames)
        uncached = time.perf_counter() - start
        result["far"]["uncached_wall_s"] = round(uncached, 3)
        result["far"]["kv_cache_speedup"] = round(uncached / result["far"]["wall_s"], 2)
        decode_s = bench_decode(codes, dvae)
        result["dvae_decode"] = dict(wall_s=round(decode_s, 3), frames_per_s=round(frames / decode_s, 1))
        far_total = result["far"]["wall_s"] + decode_s
        result["far"]["rtf_with_decode"] = round(frames / far_total / fps, 3)
        print(f"FAR without KV cache: {uncached:.2f} s ({result['far']['kv_cache_speedup']}× slower); dVAE decode "
              f"{frames / decode_s:.1f} frames/s; FAR RTF with decode {result['far']['rtf_with_decode']}")
        # what evaluate and `nwt generate` run by default: guidance doubles the rows per frame
        guidance = params.evaluate.guidance
        if guidance != 1.0 and cfg.audio_dropout > 0:
            model = prior_at("far")
            model.sample(mel[:8], 0, seed=0, guidance=guidance)  # warm-up
            start = time.perf_counter()
            model.sample(mel, 0, temperature=1.0, seed=0, guidance=guidance)
            wall = time.perf_counter() - start
            result["far_guided"] = dict(guidance=guidance, wall_s=round(wall, 3), frames_per_s=round(frames / wall, 2),
                                        rtf=round(frames / wall / fps, 3),
                                        rtf_with_decode=round(frames / (wall + decode_s) / fps, 3))
            print(f"FAR with guidance {guidance:g}: {frames / wall:.2f} frames/s, RTF {frames / wall / fps:.3f}, "
                  f"with decode {result['far_guided']['rtf_with_decode']}")
    return result


def sample_uncached(model, mel, frames: int):
    """Greedy FAR sampling without a KV cache: for each new frame the teacher-forced forward runs
    again over the last `context_frames` frames (the placeholder for the frame being drawn is
    never read: the forward predicts frame t from frames < t). Speed reference only."""
    import torch

    d = model.dims
    codes = torch.zeros(frames, d.grid_h, d.grid_w, d.code_heads, dtype=torch.long)
    episode = torch.tensor([model.episode_row(0)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as Prior.sample runs on CPU
    try:
        with torch.no_grad():
            for t in range(frames):
                lo = max(0, t + 1 - d.context_frames)
                logits = model(codes[None, lo : t + 1], mel[None, 4 * lo : 4 * (t + 1)], episode, style=None)
                codes[t] = logits[0, -1].argmax(-1)
    finally:
        torch.set_num_threads(threads)
    return codes


def bench_decode(codes, dvae_cfg) -> float:
    """Seconds to decode `codes` (T, H', W', heads) with a random-weight dVAE of the params.yaml dims."""
    import torch

    from nwt.models.dvae import DVAE
    from nwt.models.dvae_io import decode_codes
    from nwt.train.dvae import dvae_dims  # the trainer's own params → dims

    torch.manual_seed(0)
    model = DVAE(dvae_dims(dvae_cfg, n_episodes=8)).eval()
    with torch.no_grad():
        decode_codes(model, codes[:2].numpy(), 0)  # warm-up
        start = time.perf_counter()
        decode_codes(model, codes.numpy(), 0)
        return time.perf_counter() - start


def bench_dvae_train_step(steps: int = 20, warmup: int = 3) -> dict:
    import torch
    import torch.nn.functional as F

    from nwt.models.dvae import DVAE
    from nwt.params import load_params
    from nwt.precision import autocast, cpu_has_native_bf16
    from nwt.train.common import adamw
    from nwt.train.dvae import dvae_dims

    cfg = load_params(REPO / "params.yaml").train_dvae
    b, h, w = cfg.batch_size, cfg.crop_height or 256, cfg.crop_width or 224
    result = dict(batch=b, window=[h, w], threads=torch.get_num_threads(),
                  native_cpu_bf16=cpu_has_native_bf16())
    for name, bf16, layout in (("fp32", False, torch.contiguous_format), ("bf16", True, torch.contiguous_format),
                               ("bf16_channels_last", True, torch.channels_last)):
        torch.manual_seed(0)
        model = DVAE(dvae_dims(cfg, n_episodes=8)).to(memory_format=layout).train()
        opt = adamw(model.parameters(), 1e-4)
        x = (torch.rand(b, 3, h, w) * 2 - 1).contiguous(memory_format=layout)
        ep = torch.zeros(b, dtype=torch.long)
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            with autocast("cpu", bf16):
                recon = model(x, ep)[0].float()
                loss = (recon - x).abs().mean() + cfg.mse_weight * F.mse_loss(recon, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        result[f"{name}_s_per_step"] = round((time.perf_counter() - start) / steps, 4)
    result["speedup_bf16_channels_last"] = round(result["fp32_s_per_step"] / result["bf16_channels_last_s_per_step"], 2)
    print(f"dvae_train_step: {result}")
    return result


SECTIONS = {"preprocess": bench_preprocess, "prior_sampling": bench_prior_sampling,
            "dvae_train_step": bench_dvae_train_step}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--frames", type=int, default=50, help="frames sampled per prior mode (prior_sampling)")
    args = parser.parse_args()
    report = json.loads(OUT.read_text()) if OUT.exists() else {}
    report["machine"] = machine()
    for name in args.only or SECTIONS:
        report[name] = bench_prior_sampling(args.frames) if name == "prior_sampling" else SECTIONS[name]()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
