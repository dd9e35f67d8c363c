"""A SyncNet-style sync expert: does this 0.2 s of speech go with these 5 mouth frames?

Two streams, each ending in an L2-normalised embedding (after Chung & Zisserman 2016, "Out of
time", and Wav2Lip's expert discriminator):

- video: SYNC_WINDOW consecutive frames of the mouth region, grey, stacked as channels. The
  region is a box of the 256×224 face crop, `dims.crop_rows` × `dims.crop_cols` (fractions),
  downscaled to `height` × `width`. The box follows the framing the model was trained on
  (`nwt.geometry.sync_mouth_box` of faces.face_scale and faces.centre_shift): the lower half of
  the face, nose tip to below the chin, cheek to cheek (default framing: rows 0.375–0.75 = 96 px,
  columns 0.25–0.75 = 112 px; the mouth sits around rows 0.48–0.60, columns 0.38–0.62). Grey
  because mouth opening is a brightness pattern (dark interior, light teeth) and it keeps the
  stream cheap on a CPU.
- audio: the matching 20 log-mel frames (MELS_PER_FRAME per video frame,
  `nwt.models.audio_features.log_mel`) × N_MELS bins, as a 1-D convolution over time with the
  bins as channels.

Distances between the two embeddings (Euclidean, in [0, 2]) are what LSE-D / LSE-C measure
(`nwt.eval.lipsync`). `SyncDims` is saved as a dict in every checkpoint, so
`load_sync_expert(path)` rebuilds the model from the file alone.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nwt.checkpoint import load_checkpoint
from nwt.constants import MELS_PER_FRAME, N_MELS, Timing
from nwt.models.audio_features import log_mel
from nwt.models.dims import migrate_dims

GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma
SYNC_WINDOW = 5  # video frames per sync window (0.2 s at 25 fps; syncnet_python's definition)
# The box of checkpoints written while it was a constant (before it followed the framing; it is
# `nwt.geometry.sync_mouth_box` of the default framing, face_scale 2.0 and centre_shift 0.19).
# Only for reading those checkpoints: new code takes the box from the framing or the model's dims.
MOUTH_BOX_ROWS = (0.375, 0.75)  # fractions of the crop height
MOUTH_BOX_COLS = (0.25, 0.75)  # ... and of its width
# former SyncDims fields, now constants: a checkpoint may carry them at these values (migrate_sync_dims)
FIXED_SYNC_DIMS = {"window": SYNC_WINDOW, "mels_per_frame": MELS_PER_FRAME, "n_mels": N_MELS}
# fields added since: what checkpoints without them used
ADDED_SYNC_DIMS = {"crop_rows": MOUTH_BOX_ROWS, "crop_cols": MOUTH_BOX_COLS}


@dataclass
class SyncDims:
    """Every field is a `train_sync` params key, except the mouth box, which follows the framing
    (`nwt.geometry.sync_mouth_box` of the faces params)."""

    height: int  # the mouth box is resized to height × width grey pixels
    width: int
    channels: int  # video stem width (doubles at each of the stride-2 stages, up to 4×)
    audio_channels: int  # audio conv width
    embed_dim: int  # embedding size of both streams
    dropout: float  # on the pooled features before each stream's head (training only)
    crop_rows: tuple[float, float]  # the mouth box in the 256×224 crop: rows (fractions of its height)
    crop_cols: tuple[float, float]  # ... and columns (fractions of its width)

    def __post_init__(self):
        # checkpoints store lists; the box is compared and hashed as tuples
        self.crop_rows, self.crop_cols = tuple(map(float, self.crop_rows)), tuple(map(float, self.crop_cols))
        for name, (a, b) in (("crop_rows", self.crop_rows), ("crop_cols", self.crop_cols)):
            if not 0.0 <= a < b <= 1.0:
                raise ValueError(f"SyncDims.{name} must be fractions 0 ≤ start < end ≤ 1, got {(a, b)}")

    def to_dict(self) -> dict:
        """What a checkpoint saves (plain types, weights_only-loadable)."""
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> SyncDims:
        """A checkpoint's dims dict, of this layout or an older one (`migrate_sync_dims`)."""
        return cls(**migrate_sync_dims(saved))

    # fixed by the architecture (constants), here for code that reads them off the dims
    @property
    def window(self) -> int:
        return SYNC_WINDOW

    @property
    def mels_per_frame(self) -> int:
        return MELS_PER_FRAME

    @property
    def n_mels(self) -> int:
        return N_MELS

    @property
    def audio_frames(self) -> int:
        return SYNC_WINDOW * MELS_PER_FRAME  # 20


def migrate_sync_dims(saved: dict) -> dict:
    """A saved SyncDims dict → keyword arguments of today's SyncDims. Older checkpoints saved the
    window, mel frames per video frame and mel bins too; they must equal today's constants
    (SYNC_WINDOW, MELS_PER_FRAME, N_MELS) and are dropped. The mouth box was saved by the first
    layout, then was a constant, now is a field again: a checkpoint without it used
    MOUTH_BOX_ROWS / COLS. Unknown keys are an error."""
    return migrate_dims(saved, SyncDims, added=ADDED_SYNC_DIMS, fixed=FIXED_SYNC_DIMS)


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
        layers = [_conv_bn(SYNC_WINDOW, widths[0], 2), _conv_bn(widths[0], widths[1], 1)]  # 24×28
        for w_in, w_out in zip(widths[1:-1], widths[2:]):
            layers.append(_conv_bn(w_in, w_out, 2))  # 12×14 → 6×7 → 3×4
        self.video = nn.Sequential(*layers)
        self.drop = nn.Dropout(dims.dropout)
        self.video_head = nn.Linear(widths[-1] * 2, dims.embed_dim)  # mean- and max-pooled features
        a = dims.audio_channels
        self.audio = nn.Sequential(
            _conv1d_bn(N_MELS, a, 1),  # 20
            _conv1d_bn(a, a, 1),
            _conv1d_bn(a, 2 * a, 2),  # 10
            _conv1d_bn(2 * a, 2 * a, 2),  # 5
        )
        self.audio_head = nn.Linear(2 * a * ((dims.audio_frames + 3) // 4), dims.embed_dim)

    window = SYNC_WINDOW  # the SyncScorer interface (nwt.eval.lipsync)
    mels_per_frame = MELS_PER_FRAME

    # ------------------------------------------------------------ front ends (numpy → tensors)
    def frames_to_input(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB crops → (T, height, width) uint8 grey mouth boxes."""
        return torch.from_numpy(mouth_crops(frames, self.dims))

    def audio_to_input(self, audio: np.ndarray | torch.Tensor, timing: Timing) -> torch.Tensor:
        """(S,) audio → (S // mel_hop, N_MELS) log-mel, MELS_PER_FRAME rows per video frame."""
        return log_mel(audio, timing)

    # ------------------------------------------------------------ streams
    def forward_video(self, x: torch.Tensor) -> torch.Tensor:
        """(N, SYNC_WINDOW, height, width) uint8 or float in [0, 255] → (N, embed_dim), unit norm."""
        x = x.float() / 127.5 - 1.0
        h = self.video(x)  # (N, C, 3, 4)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return F.normalize(self.video_head(self.drop(h)), dim=-1)

    def forward_audio(self, x: torch.Tensor) -> torch.Tensor:
        """(N, SYNC_WINDOW × MELS_PER_FRAME, N_MELS) log-mel → (N, embed_dim), unit norm."""
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
    ckpt = load_checkpoint(path, map_location=map_location)
    if "dims" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a sync expert checkpoint (no dims/state_dict); "
                         "for the official syncnet_v2.model use nwt.eval.lipsync.load_scorer")
    model = SyncExpert(SyncDims.from_checkpoint(ckpt["dims"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, Timing.from_checkpoint(ckpt, path)
