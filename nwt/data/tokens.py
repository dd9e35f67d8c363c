"""Token shards: what the prior trains on, without decoding video.

`data/tokens/{split}-%06d.tar`, one WebDataset sample per clip, same key as the clip shard:
- `codes.npy`: (T, H', W', heads) uint16 memcode indices from the dVAE encoder (eval mode)
- `mel.npy`: (4T, 80) float16 log-mel (nwt.models.audio_features.log_mel), aligned to codes
- `json`: key, episode_id, episode_index, fps, sample_rate, n_frames, num_codes (codebook size
  per head), split, source shard

and `data/tokens/codebook.npy`: the dVAE's Memcodes values (heads, num_codes, value dim) float32,
what each code index stands for. The prior starts its code embeddings and output layer from
their principal directions (nwt.models.prior.Prior.init_from_codebook), so that codes that look
alike start alike instead of as unrelated symbols.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds

from nwt.atomic import atomic_path

CODEBOOK_FILE = "codebook.npy"


@dataclass
class TokenClip:
    key: str
    codes: np.ndarray  # (T, H', W', heads) uint16
    mel: np.ndarray  # (4T, 80) float32
    meta: dict

    @property
    def episode_index(self) -> int:
        return int(self.meta["episode_index"])


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def token_sample(key: str, codes: np.ndarray, mel: np.ndarray, meta: dict) -> dict:
    if codes.dtype != np.uint16 or codes.ndim != 4:
        raise ValueError(f"codes must be (T, H', W', heads) uint16, got {codes.dtype} {codes.shape}")
    if mel.shape[0] != 4 * codes.shape[0]:
        raise ValueError(f"mel has {mel.shape[0]} frames for {codes.shape[0]} video frames (want 4 per frame)")
    meta = dict(meta, key=key, n_frames=int(codes.shape[0]))
    return {
        "__key__": key,
        "codes.npy": _npy_bytes(codes),
        "mel.npy": _npy_bytes(mel.astype(np.float16)),
        "json": json.dumps(meta).encode(),
    }


def parse_token_sample(sample: dict) -> TokenClip:
    codes = np.load(io.BytesIO(sample["codes.npy"]), allow_pickle=False)
    mel = np.load(io.BytesIO(sample["mel.npy"]), allow_pickle=False).astype(np.float32)
    return TokenClip(key=sample["__key__"], codes=codes, mel=mel, meta=json.loads(sample["json"]))


def token_paths(token_dir: str | Path, split: str) -> list[str]:
    return sorted(str(p) for p in Path(token_dir).glob(f"{split}-*.tar"))


def iter_token_clips(paths: Sequence[str]) -> Iterator[TokenClip]:
    for path in paths:
        # nodesplitter=None: under DDP every rank reads every clip (the trainer draws windows itself)
        for sample in wds.WebDataset([path], shardshuffle=False, empty_check=False, nodesplitter=None):
            yield parse_token_sample(sample)


def load_token_clips(paths: Sequence[str]) -> list[TokenClip]:
    """All clips in memory: the default corpus is a few MB of tokens."""
    return list(iter_token_clips(paths))


def write_codebook(token_dir: str | Path, values: np.ndarray) -> Path:
    """Save the dVAE's code values (heads, num_codes, d) beside the token shards (atomically)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"codebook values must be (heads, num_codes, d), got {values.shape}")
    path = Path(token_dir) / CODEBOOK_FILE
    with atomic_path(path) as tmp:
        np.save(tmp, values, allow_pickle=False)
    return path


def load_codebook(token_dir: str | Path) -> np.ndarray | None:
    """(heads, num_codes, d) float32 code values, or None where the tokens carry none."""
    path = Path(token_dir) / CODEBOOK_FILE
    return np.load(path, allow_pickle=False) if path.exists() else None
