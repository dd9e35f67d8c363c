"""A SyncNet-style sync expert: does this 0.2 s of speech go with these 5 mouth frames?

Two streams, each ending in an L2-normalised embedding (after Chung & Zisserman 2016, "Out of
time", and Wav2Lip's expert discriminator):

- video: 5 consecutive frames of the mouth region, grey, stacked as channels. The region is a
  fixed box of the 256×224 face crop, `crop_rows` × `crop_cols` (fractions), downscaled to
  `height` × `width`. The faces stage centres every crop on the face (face height = crop height
  / face_scale, 2 by default), so the box is the lower half of the face: nose tip to chin, cheek
  to cheek (rows 0.375–0.75 = 96 px, columns 0.25–0.75 = 112 px → 48×56 grey by default; the
  mouth sits around rows 0.48–0.60, columns 0.38–0.62). Grey because mouth opening is a
  brightness pattern (dark interior, light teeth) and it keeps the stream cheap on a CPU.
- audio: the matching 20 log-mel frames (4 per video frame, `nwt.models.audio_features.log_mel`)
  × 80 bins, as a 1-D convolution over time with the bins as channels.

Distances between the two embeddings (Euclidean, in [0, 2]) are what LSE-D / LSE-C measure
(`nwt.eval.lipsync`). `SyncDims` is saved as a dict in every checkpoint, so
`load_sync_expert(path)` rebuilds the model from the file alone.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nwt.constants import MELS_PER_FRAME, N_MELS, Timing
from nwt.models.audio_features import log_mel

GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma


@dataclass
class SyncDims:
    window: int = 5  # video frames per sync window (0.2 s at 25 fps)
    mels_per_frame: int = MELS_PER_FRAME  # log-mel frames per video frame (window × this = 20)
    n_mels: int = N_MELS
    crop_rows: tuple[float, float] = (0.375, 0.75)  # mouth box, fractions of the crop height
    crop_cols: tuple[float, float] = (0.25, 0.75)  # ... and of its width
    height: int = 48  # the box is resized to height × width grey pixels
    width: int = 56
    channels: int = 32  # video stem width (doubles at each of the stride-2 stages, up to 4×)
    audio_channels: int = 128  # audio conv width
    embed_dim: int = 128  # embedding size of both streams
    dropout: float = 0.0  # on the pooled features before each stream's head (training only)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_rows"], d["crop_cols"] = list(self.crop_rows), list(self.crop_cols)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SyncDims":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SyncDims keys {sorted(unknown)}")
        d = dict(d)
        for k in ("crop_rows", "crop_cols"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    @property
    def audio_frames(self) -> int:
        return self.window * self.mels_per_frame  # 20


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _conv1d_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))


class SyncExpert(nn.Module):
    def __init__(self, dims: SyncDims):
        super().__init__()
        self.dims = dims
        c = dims.channels
        widths = [c, c, 2 * c, 4 * c, 4 * c]
        layers = [_conv_bn(dims.window, widths[0], 2), _conv_bn(widths[0], widths[1], 1)]  # 24×28
        for w_in, w_out in zip(widths[1:-1], widths[2:]):
            layers.append(_conv_bn(w_in, w_out, 2))  # 12×14 → 6×7 → 3×4
        self.video = nn.Sequential(*layers)
        self.drop = nn.Dropout(dims.dropout)
        self.video_head = nn.Linear(widths[-1] * 2, dims.embed_dim)  # mean- and max-pooled features
        a = dims.audio_channels
        self.audio = nn.Sequential(
            _conv1d_bn(dims.n_mels, a, 1),  # 20
            _conv1d_bn(a, a, 1),
            _conv1d_bn(a, 2 * a, 2),  # 10
            _conv1d_bn(2 * a, 2 * a, 2),  # 5
        )
        self.audio_head = nn.Linear(2 * a * ((dims.audio_frames + 3) // 4), dims.embed_dim)

    @property
    def window(self) -> int:
        return self.dims.window

    @property
    def mels_per_frame(self) -> int:
        return self.dims.mels_per_frame

    # ------------------------------------------------------------ front ends (numpy → tensors)
    def frames_to_input(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB crops → (T, height, width) uint8 grey mouth boxes."""
        return torch.from_numpy(mouth_crops(frames, self.dims))

    def audio_to_input(self, audio: np.ndarray | torch.Tensor, timing: Timing) -> torch.Tensor:
        """(S,) audio → (S // mel_hop, n_mels) log-mel, `mels_per_frame` rows per video frame."""
        if self.dims.mels_per_frame != MELS_PER_FRAME:
            raise ValueError(f"this expert expects {self.dims.mels_per_frame} mel frames per video frame, "
                             f"log_mel gives {MELS_PER_FRAME}")
        return log_mel(audio, timing)

    # ------------------------------------------------------------ streams
    def forward_video(self, x: torch.Tensor) -> torch.Tensor:
        """(N, window, height, width) uint8 or float in [0, 255] → (N, embed_dim), unit norm."""
        x = x.float() / 127.5 - 1.0
        h = self.video(x)  # (N, C, 3, 4)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return F.normalize(self.video_head(self.drop(h)), dim=-1)

    def forward_audio(self, x: torch.Tensor) -> torch.Tensor:
        """(N, window × mels_per_frame, n_mels) log-mel → (N, embed_dim), unit norm."""
        h = self.audio(x.float().transpose(1, 2))  # (N, C, 5)
        return F.normalize(self.audio_head(self.drop(h.flatten(1))), dim=-1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Euclidean distance between the streams' embeddings, (N,)."""
        return (self.forward_video(video) - self.forward_audio(audio)).norm(dim=-1)


def mouth_crops(frames: np.ndarray, dims: SyncDims, margin: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (T, dims.height + 2·margin, dims.width + 2·margin) uint8 grey
    mouth boxes (area resize). `margin` > 0 widens the box by that many output pixels on every
    side (edge pixels repeated outside the frame), for random-shift augmentation in training."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) RGB frames, got shape {frames.shape}")
    t, h, w, _ = frames.shape
    r0, r1 = int(round(dims.crop_rows[0] * h)), int(round(dims.crop_rows[1] * h))
    c0, c1 = int(round(dims.crop_cols[0] * w)), int(round(dims.crop_cols[1] * w))
    mr, mc = int(round(margin * (r1 - r0) / dims.height)), int(round(margin * (c1 - c0) / dims.width))
    rows = np.clip(np.arange(r0 - mr, r1 + mr), 0, h - 1)
    cols = np.clip(np.arange(c0 - mc, c1 + mc), 0, w - 1)
    size = (dims.width + 2 * margin, dims.height + 2 * margin)
    out = np.empty((t, size[1], size[0]), np.uint8)
    for i in range(t):
        grey = frames[i][rows][:, cols].astype(np.float32) @ GREY
        out[i] = np.clip(cv2.resize(grey, size, interpolation=cv2.INTER_AREA) + 0.5, 0, 255)
    return out


def load_sync_expert(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[SyncExpert, Timing]:
    """Rebuild the expert from `sync.pt` alone (weights_only load), in eval mode, with its Timing."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if "dims" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a sync expert checkpoint (no dims/state_dict); "
                         "for the official syncnet_v2.model use nwt.eval.lipsync.load_scorer")
    model = SyncExpert(SyncDims.from_dict(ckpt["dims"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    t = ckpt.get("timing", {})
    return model, Timing(int(t.get("fps", 25)), int(t.get("sample_rate", 16000)))
