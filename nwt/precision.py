"""Numeric precision: bf16 autocast on CUDA (and on CPU where asked), and whether this CPU has
native bf16 kernels. Used by training, evaluation and generation alike."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def autocast(device: torch.device | str, cpu_bf16: bool = False):
    """bf16 autocast on CUDA; on CPU only with `cpu_bf16` (else fp32, a no-op context).

    CPU bf16 runs on oneDNN's native bf16 kernels where the CPU has them (AVX512-BF16 or AMX) and is emulated, slower
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
