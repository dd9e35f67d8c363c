"""Checkpoints that resume safely and load with `torch.load(..., weights_only=True)`.

A checkpoint holds plain containers and tensors only: model dimensions as a dict, state
dicts, step, RNG states as tensors, and a fingerprint of the params and inputs that shaped
it. A run resumes only from a checkpoint with the same fingerprint (which also covers the source
of the model and training code, `source_fingerprint`); otherwise it starts fresh and says so
(docs/design.md, Resume).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nwt.atomic import atomic_path

log = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """Stable hash of JSON-able params and input descriptions (e.g. file names + sizes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def files_fingerprint(paths: list[str | os.PathLike]) -> list[tuple[str, int, str]]:
    """Name, size and content hash of each file. Contents, not sizes: token shards of a retrained
    dVAE have the same sizes (fixed-shape uint16 arrays), and a size-only fingerprint let the
    prior resume a finished checkpoint trained on the old tokens. (≈0.1 s per 100 MB.)"""
    out = []
    for p in sorted(map(str, paths)):
        h = hashlib.blake2b(digest_size=16)
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        out.append((Path(p).name, Path(p).stat().st_size, h.hexdigest()))
    return out


def source_fingerprint(*modules: str) -> str:
    """Hash of the source files of the named modules (e.g. "nwt.models.dvae"): a checkpoint
    made by other model or training code is not resumed, even with the same params."""
    import importlib.util

    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise ModuleNotFoundError(name)
        h.update(name.encode() + Path(spec.origin).read_bytes())
    return h.hexdigest()[:16]


def rng_state() -> dict[str, torch.Tensor]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": torch.tensor(np_state[2]),
        "python": torch.tensor(list(random.getstate()[1]), dtype=torch.int64),
    }


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Atomic save: a crash mid-write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_for_resume(path: str | os.PathLike, expected_fingerprint: str) -> dict | None:
    """The checkpoint at `path` if it matches `expected_fingerprint`, else None (and why)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # a torn or foreign file: start fresh, loudly
        log.warning("cannot read checkpoint %s (%s): starting fresh", path, exc)
        return None
    if ckpt.get("fingerprint") != expected_fingerprint:
        log.warning(
            "checkpoint %s was made with other params or inputs (fingerprint %s, now %s): starting fresh",
            path, ckpt.get("fingerprint"), expected_fingerprint,
        )
        return None
    return ckpt
