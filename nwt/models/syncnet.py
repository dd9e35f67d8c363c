"""The official SyncNet (syncnet_python's `S` network) behind the sync-scorer interface that
nwt.eval.lipsync scores with, so that LSE-D / LSE-C can also be given in the published network's
units.

`SyncNetS` is the network of syncnet_python's SyncNetModel.py, layer for layer with the same
names, so the published `syncnet_v2.model` state dict loads into it. `OfficialSyncNet` wraps it
with the original front ends: 13 MFCCs (python_speech_features 0.6 defaults, reimplemented in
numpy: nwt.models.mfcc) of the int16-scaled audio, and 224×224 BGR face crops in 0–255 cut with
run_pipeline.py's crop geometry (`official_face_crops`). Its embeddings are not normalised
(published LSE-D values are around 6–8).
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn as nn

from nwt.constants import Timing
from nwt.geometry import face_in_crop
from nwt.models.mfcc import mfcc


class SyncNetS(nn.Module):
    """The `S` network of syncnet_python's SyncNetModel.py (layer for layer, same names), so that
    the published `syncnet_v2.model` state dict loads into it.

    Audio in: (N, 1, 13, 20) MFCC; lips in: (N, 3, 5, 224, 224) BGR in 0–255; out: (N, 1024)."""

    def __init__(self, num_layers_in_fc_layers: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers),
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnaud(x)  # (N, 512, 1, 1)
        return self.netfcaud(mid.view(mid.shape[0], -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnlip(x)  # (N, 512, 1, 1, 1)
        return self.netfclip(mid.view(mid.shape[0], -1))


OFFICIAL_SIZE = 224  # lip input side
OFFICIAL_CROP_SCALE = 0.4  # run_pipeline.py's `cs`: the face crop is padded by this share of the box
OFFICIAL_PAD_VALUE = 110  # grey padding outside the frame (run_pipeline.py)
OFFICIAL_TIMING = Timing(25, 16000)  # the only rates the published network works at


def official_face_crops(frames: np.ndarray, face_scale: float, centre_shift: float) -> np.ndarray:
    """(T, 256, 224, 3) RGB crops → (T, 3, 224, 224) uint8 BGR face crops as syncnet_python's
    run_pipeline.py cuts them from a face track: box half-size bs, rows from the box centre − bs
    to + bs·(1 + 2·cs), columns ± bs·(1 + cs), padded with 110 outside the image, resized to
    224×224. Our faces stage puts the face box where the framing says (params faces.face_scale,
    faces.centre_shift; `nwt.geometry.face_in_crop`), which fixes the box."""
    t, h, w, _ = frames.shape
    centre, height = face_in_crop(face_scale, centre_shift)
    bs = h * height / 2.0  # half the face-box size
    my = h * centre  # face centre row
    mx = w / 2.0
    bsi = int(bs * (1 + OFFICIAL_CROP_SCALE))  # padding, then the box centre in padded coordinates
    my, mx = my + bsi, mx + bsi
    r0, r1 = int(my - bs), int(my + bs * (1 + 2 * OFFICIAL_CROP_SCALE))
    c0, c1 = int(mx - bs * (1 + OFFICIAL_CROP_SCALE)), int(mx + bs * (1 + OFFICIAL_CROP_SCALE))
    out = np.empty((t, 3, OFFICIAL_SIZE, OFFICIAL_SIZE), np.uint8)
    for i in range(t):
        bgr = np.ascontiguousarray(frames[i, :, :, ::-1])
        padded = np.pad(bgr, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=OFFICIAL_PAD_VALUE)
        out[i] = cv2.resize(padded[r0:r1, c0:c1], (OFFICIAL_SIZE, OFFICIAL_SIZE)).transpose(2, 0, 1)
    return out


class OfficialSyncNet(nn.Module):
    """The published SyncNet behind nwt.eval.lipsync's `SyncScorer` interface (25 fps / 16 kHz
    only). `face_scale`, `centre_shift`: the framing of the crops (params faces.face_scale,
    faces.centre_shift), which says where the face is."""

    window = 5  # syncnet_python's window: 5 video frames
    mels_per_frame = 4  # 100 Hz MFCC at 25 fps

    def __init__(self, face_scale: float, centre_shift: float):
        super().__init__()
        self.net = SyncNetS()
        self.face_scale, self.centre_shift = face_scale, centre_shift

    def frames_to_input(self, frames: np.ndarray) -> torch.Tensor:
        crops = official_face_crops(np.asarray(frames), self.face_scale, self.centre_shift)
        return torch.from_numpy(crops)  # (T, 3, 224, 224)

    def audio_to_input(self, audio: np.ndarray, timing: Timing) -> torch.Tensor:
        if timing != OFFICIAL_TIMING:
            raise ValueError(f"the official SyncNet works at 25 fps / 16 kHz, "
                             f"not {timing.fps} fps / {timing.sample_rate} Hz")
        pcm = np.asarray(audio, np.float64) * 32768.0  # syncnet_python reads int16 PCM with scipy
        return torch.from_numpy(mfcc(pcm, timing.sample_rate).astype(np.float32))  # (A, 13)

    def forward_video(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 5, 3, 224, 224) → (N, 3, 5, 224, 224) float 0–255, as imtv[:, :, i:i+5]
        return self.net.forward_lip(x.permute(0, 2, 1, 3, 4).float())

    def forward_audio(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 20, 13) → (N, 1, 13, 20), as cct[:, :, :, 4i:4i+20]
        return self.net.forward_aud(x.transpose(1, 2).unsqueeze(1).float())


def load_official_syncnet(path: str | os.PathLike, face_scale: float, centre_shift: float) -> OfficialSyncNet:
    """Build `S` and load `syncnet_v2.model` (a state dict) into it, in eval mode. Like the
    original `loadParameters`, keys missing from the file (BatchNorm `num_batches_tracked`,
    absent from files saved by old torch) keep their initial values; any other mismatch fails."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"official SyncNet weights not found at {path}: download syncnet_v2.model "
                                "with syncnet_python's download_model.sh and give its path")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = OfficialSyncNet(face_scale, centre_shift)
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path} is not a syncnet_v2.model state dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval()
