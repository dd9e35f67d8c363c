"""How closely a framing (params faces.face_scale, faces.centre_shift) reproduces the NWT paper's
crop: face in the upper third, torso, hands and desk in view.

Measure (`paper_placement_error`): each of the paper's own 256×224 clips (nwt_samples/gt) is
embedded in a wider broadcast-like frame (upscaled ×EMBED_SCALE, centred on a CANVAS_H×CANVAS_W
grey canvas), then run through the faces stage's logic (Haar detection every STRIDE frames,
`nwt.data.faces.track_shot`, `nwt.geometry.crop_frame`) with the framing under test. The same
detector then finds the face in our 256×224 crop and in the paper's frame; per clip we take the
median box of each over the sampled frames. The error of a clip is the distance between the two
faces' (centre x, centre y, height), all in crop heights; `placement_error` is its mean over the
clips. The horizontal part cannot be tuned (the crop always centres the face; the paper's
presenter sits up to ±0.03 crop widths off centre), so `vertical_size_error` (centre y and height
only) is also given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nwt.constants import CROP_H, CROP_W
from nwt.data.face_backends import make_detector
from nwt.data.faces import track_shot
from nwt.data.media import iter_frames
from nwt.geometry import crop_frame
from nwt.params import FacesParams

# the measurement's protocol (fixed, so that figures compare across framings and runs)
FPS = 25  # the gt clips' rate
EMBED_SCALE = 2  # the paper's 256-px-high frame becomes a 512-px-high presenter shot ...
CANVAS_H, CANVAS_W = 720, 1280  # ... centred on a 720p frame
CANVAS_GREY = 60  # canvas fill (no texture: nothing there for the detector to find)
STRIDE = 5  # detection every 5th frame, as the faces stage's default
MIN_FACE_PX = 40  # faces.min_face_px's default
SMOOTH_S = 0.5  # faces.smooth_s's default
MAX_MOTION = 1.0  # faces.max_motion's default


def embed_in_wide_frame(frame: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 → (CANVAS_H, CANVAS_W, 3): the frame upscaled ×EMBED_SCALE, centred."""
    h, w = frame.shape[:2]
    big = cv2.resize(frame, (w * EMBED_SCALE, h * EMBED_SCALE), interpolation=cv2.INTER_CUBIC)
    bh, bw = big.shape[:2]
    if bh > CANVAS_H or bw > CANVAS_W:
        raise ValueError(f"a {w}×{h} frame upscaled ×{EMBED_SCALE} does not fit the {CANVAS_W}×{CANVAS_H} canvas")
    canvas = np.full((CANVAS_H, CANVAS_W, 3), CANVAS_GREY, np.uint8)
    y0, x0 = (CANVAS_H - bh) // 2, (CANVAS_W - bw) // 2
    canvas[y0:y0 + bh, x0:x0 + bw] = big
    return canvas


@dataclass
class PaperClip:
    """One gt clip, read once; its detections do not depend on the framing under test."""

    name: str
    frames: np.ndarray  # (T, 256, 224, 3) uint8 BGR, the paper's crops
    sampled: list[int]  # frame indices run through the detector
    wide_boxes: list[np.ndarray]  # detections (N, 4) in the wide frame, per sampled frame
    paper_face: np.ndarray | None  # (3,) median face centre x, y and height in the paper's frame, px


def face_summary(boxes: list[np.ndarray]) -> np.ndarray | None:
    """Largest-face boxes of several frames → (3,) median centre x, centre y, height; None if none."""
    found = np.array([b[0] for b in boxes if len(b)])
    if not len(found):
        return None
    return np.median(np.stack([found[:, 0] + found[:, 2] / 2, found[:, 1] + found[:, 3] / 2, found[:, 3]], 1), 0)


def read_paper_clip(path: Path, detector) -> PaperClip:
    frames = np.stack(list(iter_frames(path, FPS)))
    if frames.shape[1:3] != (CROP_H, CROP_W):
        raise ValueError(f"{path.name}: expected the paper's {CROP_W}×{CROP_H} crops, got "
                         f"{frames.shape[2]}×{frames.shape[1]}")
    sampled = list(range(0, len(frames), STRIDE))
    wide = [detector(embed_in_wide_frame(frames[i])) for i in sampled]
    return PaperClip(path.stem, frames, sampled, wide, face_summary([detector(frames[i]) for i in sampled]))


def place_clip(clip: PaperClip, face_scale: float, centre_shift: float, detector) -> dict:
    """Our crop of one embedded clip under a framing against the paper's frame: per-clip figures
    in crop heights (dx, dy, dh: ours − paper), or a `rejected` reason."""
    cfg = FacesParams(backend="haar", stride=STRIDE, min_face_px=MIN_FACE_PX, face_scale=face_scale,
                      centre_shift=centre_shift, smooth_s=SMOOTH_S, max_motion=MAX_MOTION)
    track = track_shot(len(clip.frames), clip.sampled, clip.wide_boxes, cfg, FPS)
    if track.status != "kept" or clip.paper_face is None:
        reason = track.reason if track.status != "kept" else "no face found in the paper's frames"
        return dict(clip=clip.name, rejected=reason)
    ours = face_summary([detector(crop_frame(embed_in_wide_frame(clip.frames[i]), track.crop[i]))
                         for i in clip.sampled])
    if ours is None:
        return dict(clip=clip.name, rejected="no face found in our crop")
    d = (ours - clip.paper_face) / CROP_H  # (3,) crop heights
    return dict(clip=clip.name, dx=float(d[0]), dy=float(d[1]), dh=float(d[2]),
                error=float(np.linalg.norm(d)), vertical_size_error=float(np.linalg.norm(d[1:])),
                paper_cy=float(clip.paper_face[1] / CROP_H), paper_h=float(clip.paper_face[2] / CROP_H),
                ours_cy=float(ours[1] / CROP_H), ours_h=float(ours[2] / CROP_H))


def summarise(per_clip: list[dict], face_scale: float, centre_shift: float) -> dict:
    ok = [c for c in per_clip if "rejected" not in c]
    if not ok:
        return dict(placement_error=None, reason="no clip could be placed", face_scale=face_scale,
                    centre_shift=centre_shift, clips=per_clip)

    def mean(key: str) -> float:
        return round(float(np.mean([c[key] for c in ok])), 4)

    return dict(placement_error=mean("error"), vertical_size_error=mean("vertical_size_error"),
                dx_mean=mean("dx"), dy_mean=mean("dy"), dh_mean=mean("dh"),
                paper_face_cy=mean("paper_cy"), paper_face_h=mean("paper_h"),
                ours_face_cy=mean("ours_cy"), ours_face_h=mean("ours_h"),
                clips_placed=len(ok), clips=len(per_clip), face_scale=face_scale, centre_shift=centre_shift,
                per_clip=per_clip)


def paper_clips(gt_dir: Path) -> tuple[list[PaperClip], object]:
    """The gt clips of `gt_dir` read and detected once (for tuning several framings), and the detector."""
    paths = sorted(Path(gt_dir).glob("*.mp4"))
    if not paths:
        raise FileNotFoundError(f"no *.mp4 clips in {gt_dir} (expected nwt_samples/gt)")
    detector = make_detector("haar", MIN_FACE_PX)
    return [read_paper_clip(p, detector) for p in paths], detector


def paper_placement_error(gt_dir: Path, face_scale: float, centre_shift: float) -> dict:
    """The framing's placement error against the paper's frames (module docstring): {"placement_error":
    crop heights (mean over clips), "vertical_size_error", "dx_mean", "dy_mean", "dh_mean" (ours −
    paper), the paper's and our mean face centre row and height (crop fractions), "per_clip", …}."""
    clips, detector = paper_clips(gt_dir)
    return summarise([place_clip(c, face_scale, centre_shift, detector) for c in clips], face_scale, centre_shift)
