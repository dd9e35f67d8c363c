"""Face detection, the presenter's track per shot, and the smoothed 256×224 crop window.

Backends are chosen by `faces.backend` (`nwt.data.face_backends`: `haar` and `dlib` need no
download, `face_alignment` is the production backend); all report face-ellipse boxes (ear to
ear, hairline to chin), the synthetic ground truth's convention. Detection runs every `stride`
frames; the track is interpolated between detections (a missed frame inside a good track is not
fatal) and smoothed so that the crop does not jitter. A shot is rejected with a ledger reason
when it has no face, several comparable faces, a face too small, or a face that moves too much.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nwt.constants import CROP_H, CROP_W
from nwt.data.face_backends import make_detector
from nwt.data.media import iter_frames
from nwt.geometry import crop_centre, crop_frame, crop_window
from nwt.params import FacesParams

MIN_DETECTED_SHARE = 0.5  # a shot keeps its face only if found in at least this share of samples
SECOND_FACE_AREA = 0.5  # a second face this large relative to the first counts as "comparable"
MULTI_FACE_SHARE = 0.3  # ... and in this share of detected samples the shot has several faces
MATCH_IOU = 0.3  # a detection "finds" the true face above this IoU
THUMB_SCALE = 0.5  # contact-sheet thumbnails: the 256×224 crop at half size (128×112)


@dataclass
class ShotTrack:
    """Decision and per-frame track for one shot (frames at pipeline fps)."""

    status: str  # kept | rejected
    reason: str
    detail: str
    sampled: list[int]  # frame indices that were run through the detector
    detections: list[list[float] | None]  # main face box per sampled frame
    box: np.ndarray | None = None  # (T, 4) interpolated face box per frame, kept shots
    crop: np.ndarray | None = None  # (T, 3) smoothed crop centre x, y and height, kept shots
    motion: float | None = None  # median face-centre speed between detections, face heights/s


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding. (T, ...) → (T, ...)"""
    if window <= 1 or len(x) < 2:
        return x
    pad = window // 2
    padded = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], window - 1 - pad, 0)])
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, j], kernel, "valid") for j in range(x.shape[1])], axis=1)


def track_shot(n_frames: int, sampled: list[int], boxes: list[np.ndarray], cfg: FacesParams, fps: int) -> ShotTrack:
    """Decide on one shot from its per-sample detections and build its smoothed crop track."""
    found = [(i, b) for i, b in zip(sampled, boxes) if len(b)]
    main = [b[0].tolist() if len(b) else None for b in boxes]
    if not sampled or len(found) < MIN_DETECTED_SHARE * len(sampled):
        return ShotTrack("rejected", "no_face", f"face in {len(found)}/{len(sampled)} sampled frames", sampled, main)
    several = sum(len(b) > 1 and b[1][2] * b[1][3] >= SECOND_FACE_AREA * b[0][2] * b[0][3] for _, b in found)
    if several > MULTI_FACE_SHARE * len(found):
        return ShotTrack("rejected", "multiple_faces", f"comparable second face in {several}/{len(found)} samples",
                         sampled, main)
    heights = np.array([b[0][3] for _, b in found])
    if np.median(heights) < cfg.min_face_px:
        return ShotTrack("rejected", "face_too_small", f"median face height {np.median(heights):.0f} px",
                         sampled, main)
    idx = np.array([i for i, _ in found], np.float64)
    pts = np.array([b[0] for _, b in found])  # (K, 4) x, y, w, h
    motion = face_motion(idx, pts, fps)
    if motion > cfg.max_motion:
        return ShotTrack("rejected", "too_much_motion", f"face centre moves {motion:.2f} face heights/s "
                         f"(max_motion {cfg.max_motion})", sampled, main, motion=motion)
    frames = np.arange(n_frames, dtype=np.float64)
    box = np.stack([np.interp(frames, idx, pts[:, j]) for j in range(4)], axis=1)  # (T, 4)
    crop = crop_centre(box, cfg.face_scale, cfg.centre_shift)  # (T, 3)
    crop = moving_average(crop, max(1, int(round(cfg.smooth_s * fps))))
    return ShotTrack("kept", "ok", f"face in {len(found)}/{len(sampled)} samples", sampled, main, box, crop, motion)


def face_motion(frames: np.ndarray, boxes: np.ndarray, fps: int) -> float:
    """Median speed of the face centre between consecutive detections, in face heights per second.

    frames (K,) sampled frame indices with a detection, boxes (K, 4). The median ignores a single
    stray detection but catches a face that keeps moving (a walk across the set, a fast pan).
    """
    if len(frames) < 2:
        return 0.0
    centres = boxes[:, :2] + boxes[:, 2:] / 2  # (K, 2)
    dt = np.diff(frames) / fps  # (K-1,)
    speed = np.linalg.norm(np.diff(centres, axis=0), axis=1) / dt / np.median(boxes[:, 3])
    return float(np.median(speed))


def episode_faces(job: dict, cfg: FacesParams, fps: int) -> dict:
    """Ray task: one episode's shots → per-shot decisions and tracks, truth scores, detector time
    and, per shot, a small thumbnail for the contact sheet (kept: the first frame's crop at
    THUMB_SCALE as JPEG bytes; rejected: None — the sheet draws a grey tile with the reason)."""
    shots = job["shots"]  # [(shot, start, end)]
    detector = make_detector(cfg.backend, cfg.min_face_px)
    stride = cfg.stride
    want = {f for _, s, e in shots for f in range(s, e, stride)}
    detections: dict[int, np.ndarray] = {}
    firsts: dict[int, np.ndarray] = {}  # first frame of each shot, for its thumbnail
    starts = {s for _, s, _ in shots}
    detect_s = 0.0
    for k, frame in enumerate(iter_frames(job["path"], fps)):
        if k in want:
            t0 = time.perf_counter()
            detections[k] = detector(frame)
            detect_s += time.perf_counter() - t0
        if k in starts:
            firsts[k] = frame
    out = []
    for shot, start, end in shots:
        sampled = [f for f in range(start, end, stride) if f in detections]
        track = track_shot(end - start, [f - start for f in sampled], [detections[f] for f in sampled], cfg, fps)
        thumb = None
        if track.status == "kept" and start in firsts:
            crop = crop_frame(firsts[start], track.crop[0])
            small = cv2.resize(crop, None, fx=THUMB_SCALE, fy=THUMB_SCALE, interpolation=cv2.INTER_AREA)
            thumb = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()  # ≈5 kB
        out.append(dict(shot=shot, start=start, end=end, track=track, thumb=thumb))
    score = _truth_scores(job.get("truth"), out, fps) if job.get("truth") else None
    return dict(shots=out, score=score, detect_s=detect_s, detect_frames=len(detections))


def contact_sheet(shots: list[dict], columns: int = 6) -> np.ndarray:
    """Grid of the shots' thumbnails (BGR), each with its shot number; a rejected shot (thumb None)
    is a grey band with its reason. shots: [{shot, thumb (BGR array or JPEG bytes) or None, reason}]."""
    th, tw = int(CROP_H * THUMB_SCALE), int(CROP_W * THUMB_SCALE)
    pad = 4
    tiles = []
    for s in shots:
        tile = np.full((th, tw, 3), 255, np.uint8)
        if s.get("thumb") is not None:
            thumb = s["thumb"]
            if isinstance(thumb, (bytes, bytearray)):
                thumb = cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR)
            tile[:] = cv2.resize(thumb, (tw, th))
            label, colour = f"{s['shot']}", (0, 255, 0)
        else:
            grey = np.full((th // 2, tw, 3), 128, np.uint8)
            tile[th // 4: th // 4 + th // 2] = grey
            cv2.putText(tile, s.get("reason", "")[:16], (4, th // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                        (255, 255, 255), 1, cv2.LINE_AA)
            label, colour = f"{s['shot']}", (0, 0, 255)
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        tiles = [np.full((th, tw, 3), 255, np.uint8)]
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (th + pad) + pad, columns * (tw + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        sheet[y:y + th, x:x + tw] = tile
    return sheet


def _truth_scores(truth_path: str, shots: list[dict], fps: int) -> dict:
    truth = json.loads(Path(truth_path).read_text())
    true_boxes = truth["face_boxes"]
    to_truth = truth["fps"] / fps  # ground truth is indexed at the renderer's fps
    face_samples = found = 0
    ious, in_crop, jitter = [], [], []
    for s in shots:
        tr: ShotTrack = s["track"]
        for f, det in zip(tr.sampled, tr.detections):
            tb = true_boxes[min(len(true_boxes) - 1, int(round((s["start"] + f) * to_truth)))]
            if tb is None:
                continue
            face_samples += 1
            if det is not None:
                iou = box_iou(np.array(det), np.array(tb))
                if iou > MATCH_IOU:
                    found += 1
                    ious.append(iou)
        if tr.status == "kept":
            for f in range(len(tr.crop)):
                tb = true_boxes[min(len(true_boxes) - 1, int(round((s["start"] + f) * to_truth)))]
                if tb is not None:
                    x0, y0, w, h = crop_window(tr.crop[f])
                    in_crop.append(tb[0] >= x0 and tb[1] >= y0 and tb[0] + tb[2] <= x0 + w and tb[1] + tb[3] <= y0 + h)
            if len(tr.crop) > 1:
                jitter.extend(np.linalg.norm(np.diff(tr.crop[:, :2], axis=0), axis=1).tolist())
    return dict(face_samples=face_samples, found=found, ious=ious, in_crop=in_crop, jitter=jitter)
