"""Load a trained dVAE from `dvae.pt` alone, and turn frames into codes and back.

`dvae.pt` (written by nwt.train.dvae) holds plain containers and tensors only:
{"dims": DVAEDims.to_dict(), "state_dict": EMA weights, "episode_ids": [...], "unseen_ids": [...],
"timing": {"fps", "sample_rate"}, "fingerprint": str, "step": int}.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nwt.checkpoint import load_checkpoint
from nwt.models.dvae import DVAE, DVAEDims

UNK = "<unk>"


def load_dvae(path: str | Path, device: str | torch.device = "cpu") -> tuple[DVAE, dict]:
    """(DVAE in eval mode on `device`, meta: everything in the file but the weights)."""
    ckpt = load_checkpoint(path, map_location=device)  # weights_only=True
    model = DVAE(DVAEDims.from_checkpoint(ckpt["dims"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta


def episode_index_for(meta: dict, episode_id: str | None) -> int:
    """Embedding row of an episode id: its index if the model trained on it, else `<unk>`."""
    ids = list(meta["episode_ids"])
    unk = len(ids)
    if episode_id is None or episode_id == UNK or episode_id in set(meta.get("unseen_ids", [])):
        return unk
    return ids.index(episode_id) if episode_id in ids else unk


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_frames(model: DVAE, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 RGB frames (N, 256, 224, 3) → codes (N, H', W', heads) uint16."""
    if model.dims.num_codes > 65536:
        raise ValueError(f"{model.dims.num_codes} codes do not fit uint16")
    h, w = model.dims.grid
    out = np.zeros((len(frames), h, w, model.dims.heads), np.uint16)
    dev = _device(model)
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size])).to(dev)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, H, W)
        out[i : i + len(x)] = model.encode(x).cpu().numpy().astype(np.uint16)
    return out


@torch.no_grad()
def decode_codes(model: DVAE, codes: np.ndarray, episode_index: int, batch_size: int = 16) -> np.ndarray:
    """codes (N, H', W', heads) uint16/int → uint8 RGB frames (N, 256, 224, 3), one episode row for all."""
    dev = _device(model)
    frames = np.zeros((len(codes), model.dims.height, model.dims.width, 3), np.uint8)
    for i in range(0, len(codes), batch_size):
        idx = torch.from_numpy(np.asarray(codes[i : i + batch_size]).astype(np.int64)).to(dev)
        ep = torch.full((len(idx),), int(episode_index), dtype=torch.long, device=dev)
        rec = model.decode(idx, ep)  # (B, 3, H, W)
        rgb = ((rec.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)  # (B, H, W, 3)
        frames[i : i + len(idx)] = rgb.cpu().numpy()
    return frames
