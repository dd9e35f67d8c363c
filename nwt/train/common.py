"""Pieces every training loop shares: the LR schedule, the optimizer, bf16 autocast."""
from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger(__name__)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.01
          ) -> torch.optim.Optimizer:
    """AdamW, fused where the build supports it (≈10× faster on a loaded CPU, DESIGN.md).

    `params` may be parameter groups with their own weight_decay."""
    try:
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError) as exc:  # fused unsupported on this device/build
        log.info("fused AdamW unavailable (%s); using the default implementation", exc)
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


def autocast(device: torch.device | str, cpu_bf16: bool = False):
    """bf16 autocast on CUDA; on CPU only with `cpu_bf16` (else fp32, a no-op context).

    CPU bf16 runs on oneDNN's native bf16 kernels where the CPU has them (AVX512-BF16 or AMX:
    ≈1.5× faster dVAE training steps on this machine's 2 cores, README) and is emulated, slower
    than fp32, where it has not (`warn_if_cpu_bf16_emulated`)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cpu_bf16))


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def warn_if_cpu_bf16_emulated(device: torch.device | str, cpu_bf16: bool) -> None:
    """Log a warning when CPU bf16 autocast is asked for on a CPU without native bf16 kernels
    (the results stay valid; the run is slower than fp32 would be)."""
    if not cpu_bf16 or torch.device(device).type != "cpu":
        return
    if not cpu_has_native_bf16():
        log.warning("cpu_bf16 is on but this CPU has neither AVX512-BF16 nor AMX: bf16 is emulated "
                    "and training is slower than fp32 (set cpu_bf16: false for speed here)")
