"""Pieces every training loop shares: the LR schedule and the optimizer."""
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
    """AdamW, fused where the build supports it (one kernel for all parameters: much faster on a CPU).

    `params` may be parameter groups with their own weight_decay."""
    try:
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError) as exc:  # fused unsupported on this device/build
        log.info("fused AdamW unavailable (%s); using the default implementation", exc)
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
