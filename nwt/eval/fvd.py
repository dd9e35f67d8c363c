"""FVD features: the Kinetics-400 I3D of the FVD paper, as the TorchScript file `i3d_torchscript.pt`.

StyleGAN-V (and most FVD code since: content-debiased FVD, VideoGPT-style evaluators) uses a
TorchScript export of the I3D that Unterthiner et al.'s TF-Hub FVD uses, called as

    detector(videos, rescale=True, resize=True, return_features=True)  # → (B, 400)

with `videos` float (B, 3, T, H, W) RGB in [0, 255]: the module itself scales to [−1, 1] and
resizes every frame to 224×224; `return_features` gives the 400-d logits before the softmax.
We call it exactly so, on clips of `SEGMENT_FRAMES` = 16 consecutive frames (StyleGAN-V's FVD₁₆),
non-overlapping, cut from each test clip (a tail shorter than 16 frames is left out).

Nothing is downloaded: `evaluate.fvd_weights` names the file, and a missing file is an error that
says where to get it.
"""
from __future__ import annotations

import os

import numpy as np
import torch

FVD_WEIGHTS_FILE = "i3d_torchscript.pt"
SEGMENT_FRAMES = 16
DETECTOR_KWARGS = dict(rescale=True, resize=True, return_features=True)


def load_i3d(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """The I3D TorchScript module from `path`, on the CPU, in eval mode."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"FVD weights not found at {path}: download {FVD_WEIGHTS_FILE} (the Kinetics-400 I3D in TorchScript "
            "that StyleGAN-V's FVD code fetches; the same file serves most PyTorch FVD implementations) and set "
            "evaluate.fvd_weights to its path, or set evaluate.fvd_weights to \"\" to skip FVD")
    try:
        # torch.jit is deprecated in torch 2.x, but the published I3D exists only as TorchScript
        model = torch.jit.load(path, map_location="cpu")
    except RuntimeError as err:
        raise ValueError(f"{path} is not a TorchScript file ({FVD_WEIGHTS_FILE} is one): {err}") from err
    return model.eval()


def segments(frames: np.ndarray, length: int = SEGMENT_FRAMES) -> np.ndarray:
    """(T, H, W, 3) → (T // length, length, H, W, 3): consecutive non-overlapping segments."""
    frames = np.asarray(frames)
    n = len(frames) // length
    return frames[: n * length].reshape(n, length, *frames.shape[1:])


@torch.no_grad()
def fvd_features(model, frames: np.ndarray, length: int = SEGMENT_FRAMES, batch_size: int = 4) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of one clip → (T // length, D) I3D features (D = 400)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) RGB frames, got shape {frames.shape}")
    segs = segments(frames, length)
    out = []
    for s in range(0, len(segs), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(segs[s : s + batch_size])).float()  # (B, T, H, W, 3)
        x = x.permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, T, H, W), 0–255
        out.append(model(x, **DETECTOR_KWARGS).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
