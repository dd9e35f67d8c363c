"""The look of generated frames: is each one the requested episode's presenter, outfit and set?

A frame's look distance is its mean absolute difference (0–255 scale, all three channels) from
the nearest of the episode's reference frames (real frames, e.g. the val split), on a downscaled
image with the mouth box left out: the mouth is what the audio moves, everything else (hair,
face, shirt, set) is the look. The threshold of an episode is the 95th percentile of the same
distance for held-out real frames of that episode (e.g. its test frames), so a generated frame
is "ok" when it is as close to the look as 95 % of real frames are.

    ref = LookReference.from_frames({episode: val_frames, ...})   # (N, H, W, 3) uint8 RGB each
    ref.calibrate({episode: test_frames, ...})                     # per-episode p95 threshold
    ref.distance(episode, generated)   # (T,) float
    ref.ok(episode, generated)         # (T,) bool

Why nearest frame rather than a mean image: the presenter moves (head, blinks, gestures), so a
real frame is close to some reference frame, not to their average; a frame of another look (hair
running into the shirt, another set) is far from all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from nwt.models.sync_expert import MOUTH_BOX_COLS, MOUTH_BOX_ROWS

Box = tuple[tuple[float, float], tuple[float, float]]  # (row0, row1), (col0, col1): fractions of the crop
SYNC_BOX: Box = (MOUTH_BOX_ROWS, MOUTH_BOX_COLS)  # the sync expert's box under the default framing

SCALE = 8  # downscale factor: 256×224 → 32×28, small pose jitter and codec noise average out
MAX_REFERENCES = 512  # reference frames kept per episode (evenly strided): bounds the nearest-frame search
PERCENTILE = 95.0  # of the held-out real frames' distance: the threshold
CHUNK = 64  # frames compared at once (memory: CHUNK × references × pixels floats)


def _frames(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{what}: expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError(f"{what}: no frames")
    return frames


def outside_mouth(height: int, width: int, box: Box = SYNC_BOX) -> np.ndarray:
    """(height, width) bool: True outside the mouth box (fractions of the crop; e.g.
    nwt.geometry.sync_mouth_box of the framing params)."""
    keep = np.ones((height, width), bool)
    (r0, r1), (c0, c1) = box
    r0, r1, c0, c1 = int(round(r0 * height)), int(round(r1 * height)), int(round(c0 * width)), int(round(c1 * width))
    keep[r0:r1, c0:c1] = False
    return keep


def look_features(frames: np.ndarray, box: Box = SYNC_BOX) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (T, F) float32: the frames downscaled SCALE× (area), outside the
    mouth `box`, every channel."""
    frames = _frames(frames, "look_features")
    h, w = frames.shape[1:3]
    size = (max(1, w // SCALE), max(1, h // SCALE))
    keep = outside_mouth(size[1], size[0], box)
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    return small[:, keep].reshape(len(frames), -1)  # (T, pixels outside the box × 3)


def medoid(frames: np.ndarray, box: Box = SYNC_BOX, max_frames: int = MAX_REFERENCES) -> int:
    """Index of the most typical of (N, H, W, 3) uint8 RGB frames: the one with the least mean
    look distance to the others (of at most `max_frames`, evenly strided). A look's reference
    frame (what the generator primes with) should be this rather than an arbitrary first frame:
    a first frame can sit at an untypical framing that the whole generation then keeps."""
    frames = _frames(frames, "medoid")
    pick = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int)
    x = look_features(frames[pick], box)  # (n, F)
    total = np.zeros(len(x))
    for lo in range(0, len(x), CHUNK):
        total[lo : lo + CHUNK] = np.abs(x[lo : lo + CHUNK, None] - x[None]).mean(-1).sum(1)
    return int(pick[int(np.argmin(total))])


@dataclass
class LookReference:
    """Per episode: reference features (N, F) and, once calibrated, the distance threshold."""

    features: dict[str, np.ndarray]
    shape: dict[str, tuple[int, int]]  # (H, W) of each episode's reference frames
    box: Box  # the mouth box left out
    threshold: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_frames(cls, frames_by_episode: dict[str, np.ndarray], box: Box = SYNC_BOX) -> LookReference:
        """Reference frames per episode, (N, H, W, 3) uint8 RGB (at most MAX_REFERENCES are kept,
        evenly strided); `box`: the mouth box left out, crop fractions (default: the sync
        expert's under the default framing; pass nwt.geometry.sync_mouth_box(...) of the params)."""
        if not frames_by_episode:
            raise ValueError("LookReference.from_frames: no episodes given")
        features, shape = {}, {}
        for episode, frames in frames_by_episode.items():
            frames = _frames(frames, f"reference frames of {episode!r}")
            if len(frames) > MAX_REFERENCES:
                frames = frames[np.linspace(0, len(frames) - 1, MAX_REFERENCES).round().astype(int)]
            features[episode], shape[episode] = look_features(frames, box), frames.shape[1:3]
        return cls(features, shape, box)

    @property
    def episodes(self) -> list[str]:
        return list(self.features)

    def distance(self, episode_id: str, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB → (T,) float64: each frame's mean absolute difference (0–255)
        from the nearest reference frame of `episode_id`, outside the mouth box, downscaled."""
        if episode_id not in self.features:
            raise ValueError(f"no look reference for episode {episode_id!r}; have: {', '.join(self.episodes)}")
        frames = _frames(frames, f"frames of {episode_id!r}")
        if frames.shape[1:3] != self.shape[episode_id]:
            raise ValueError(f"frames are {frames.shape[1:3]}, the references of {episode_id!r} "
                             f"{self.shape[episode_id]}: compare frames of one size")
        ref = self.features[episode_id]  # (N, F)
        out = np.empty(len(frames))
        for lo in range(0, len(frames), CHUNK):
            x = look_features(frames[lo : lo + CHUNK], self.box)  # (c, F)
            out[lo : lo + len(x)] = np.abs(x[:, None] - ref[None]).mean(-1).min(1)
        return out

    def calibrate(self, heldout_by_episode: dict[str, np.ndarray]) -> LookReference:
        """Set each episode's threshold to the PERCENTILE-th percentile of the distance of its
        held-out real frames (not among the references: e.g. the test split against the val
        split). Episodes without held-out frames get no threshold. Returns self."""
        for episode, frames in heldout_by_episode.items():
            self.threshold[episode] = float(np.percentile(self.distance(episode, frames), PERCENTILE))
        return self

    def ok(self, episode_id: str, frames: np.ndarray) -> np.ndarray:
        """(T,) bool: each frame's distance is within the episode's threshold (see `calibrate`)."""
        if episode_id not in self.threshold:
            raise ValueError(f"episode {episode_id!r} has no look threshold: calibrate() with its held-out frames "
                             f"first (calibrated: {', '.join(self.threshold) or 'none'})")
        return self.distance(episode_id, frames) <= self.threshold[episode_id]
