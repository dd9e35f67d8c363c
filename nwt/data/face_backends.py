"""Face detectors behind `faces.backend`: one interface, three backends.

Every detector is a callable `frame_bgr (H, W, 3) uint8 → (N, 4) float64` of face boxes
x, y, w, h in full-resolution pixels, largest first. All backends report the same box
convention — the box of the face *ellipse* (ear to ear, hairline to chin), which is what the
synthetic corpus's ground truth `face_boxes` records — so that `faces.face_scale`, the crop
framing and the size/motion rules mean the same thing whichever backend ran:

- `haar`  OpenCV's bundled frontal-face cascade (offline). Its square box is mapped to the face
          box by a calibrated affine `BoxTransform` (`HAAR_TO_FACE`).
- `dlib`  dlib's HOG frontal-face detector plus the 68-point shape predictor shipped by the
          face-recognition-models wheel (offline). The box comes from the landmarks.
- `face_alignment`  production: face-alignment's S3FD detector + 2DFAN4 landmarks. Its weights
          are fetched once online into the torch hub cache; a missing file is a clear error
          (`FaceAlignmentDetector.require_weights`), never a fallback to another backend.

Landmark backends turn 68 iBUG-convention points into a box with `landmarks_to_box`: a
least-squares fit (scale + translation) of a calibrated template of the *stable* points (eyes,
nose bridge, upper jaw — not the mouth or chin, which move with speech) onto the detections.

Calibration (`calibrate_box_transform`, `calibrate_template`) was measured on synthetic episodes
rendered with seeds 100, 101, 102 (30 s each, detections every 5th frame, 401 face samples),
and checked on other seeds (0, 1, 2); see `python -m nwt.data.face_backends --help`. The
template is dlib's, and is used for face-alignment too (same 68-point convention); rerun the
calibration with face-alignment's own landmarks once its weights are available.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BACKENDS = ("haar", "dlib", "face_alignment")


@dataclass(frozen=True)
class BoxTransform:
    """Detector box → face box: centre shift (in detector-box widths/heights) and size factors."""

    dx: float
    dy: float
    sw: float
    sh: float

    def __call__(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x, y, w, h → (N, 4) x, y, w, h."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        x, y, w, h = boxes.T
        cx, cy = x + w / 2 + self.dx * w, y + h / 2 + self.dy * h
        nw, nh = self.sw * w, self.sh * h
        return np.stack([cx - nw / 2, cy - nh / 2, nw, nh], axis=1)


# Calibrated on seeds 100-102 (see module docstring): the Haar box is square and sits a little
# low; the face ellipse is narrower (0.77 w), as tall (1.0 h), its centre 0.04 h higher.
HAAR_TO_FACE = BoxTransform(dx=-0.004, dy=-0.038, sw=0.765, sh=0.998)

# 68-point indices whose position in the face box does not move with speech or blinks:
# jaw 0-3 and 13-16 (temples/cheeks), nose bridge 27-30, eyes 36-47.
STABLE_POINTS = np.r_[0:4, 13:17, 27:31, 36:48]
# Template of those points, in face-box heights relative to the face-box centre (u right, v
# down), and the face box's width/height, both calibrated with `calibrate_template` (dlib).
TEMPLATE = np.array([  # jaw 0-3 | jaw 13-16 | nose bridge 27-30 | right eye 36-41 | left eye 42-47
    [-0.384, -0.068], [-0.376, 0.024], [-0.363, 0.110], [-0.346, 0.200],
    [0.342, 0.199], [0.360, 0.110], [0.372, 0.021], [0.381, -0.071],
    [0.002, -0.053], [0.001, 0.002], [0.001, 0.058], [0.002, 0.115],
    [-0.222, -0.050], [-0.179, -0.082], [-0.124, -0.079], [-0.082, -0.033], [-0.130, -0.021], [-0.185, -0.023],
    [0.080, -0.034], [0.122, -0.082], [0.179, -0.083], [0.222, -0.051], [0.184, -0.024], [0.128, -0.022],
])
FACE_ASPECT = 0.767  # face-box width / height


def landmarks_to_box(points: np.ndarray) -> np.ndarray:
    """68 landmarks (68, 2) → face box (4,) x, y, w, h: least-squares scale + shift of TEMPLATE."""
    p = np.asarray(points, np.float64)[STABLE_POINTS]  # (K, 2)
    t = TEMPLATE
    tc, pc = t - t.mean(0), p - p.mean(0)
    scale = float((tc * pc).sum() / (tc * tc).sum())  # face-box height in pixels
    centre = p.mean(0) - scale * t.mean(0)
    w, h = FACE_ASPECT * scale, scale
    return np.array([centre[0] - w / 2, centre[1] - h / 2, w, h])


def _largest_first(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]


class HaarDetector:
    """OpenCV's Haar cascade on half-resolution raw grey frames (equalizeHist breaks the darkest
    skin tones), boxes mapped to the face-ellipse convention by HAAR_TO_FACE."""

    DETECT_SCALE = 0.5  # ≈4× faster than full resolution, faces still ≥ 20 px

    def __init__(self, min_face_px: int):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file():
            raise RuntimeError(f"{path} is missing: the haar backend needs opencv-python 4.x (pinned in pyproject)")
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_size = max(8, int(min_face_px * self.DETECT_SCALE))

    def raw(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The cascade's own square boxes (N, 4) in full-resolution pixels, largest first."""
        s = self.DETECT_SCALE
        small = cv2.resize(frame_bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size,) * 2)
        return _largest_first(np.asarray(boxes, np.float64).reshape(-1, 4) / s)

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        return _largest_first(HAAR_TO_FACE(self.raw(frame_bgr)))


def dlib_landmark_model() -> Path:
    """Path of face-recognition-models' 68-point model (its package import needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("dlib's 68-point landmark model (faces.backend dlib, the lip measures) comes with the "
                           "face-recognition-models package: pip install face-recognition-models==0.3.0 (pinned in "
                           "constraints.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall face-recognition-models")
    return path


def dlib_models(needed_by: str):
    """(the dlib module, its HOG frontal-face detector, the 68-point shape predictor); without
    dlib a RuntimeError saying that `needed_by` needs it and what to install."""
    try:
        import dlib
    except ImportError as exc:
        raise RuntimeError(f"{needed_by} needs dlib (pip install dlib-bin, pinned in constraints.txt)") from exc
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_landmark_model()))


class DlibDetector:
    """dlib's HOG frontal-face detector + 68-point shape predictor; box from the landmarks.

    HOG's window is 80 px, so it runs at full resolution (at half resolution it missed a third
    of the 130-px synthetic faces); landmarks are always predicted on the full-resolution frame.
    """

    DETECT_SCALE = 1.0

    def __init__(self, min_face_px: int):
        self.dlib, self.detector, self.predictor = dlib_models("faces.backend dlib")
        self.min_face_px = min_face_px

    def landmarks(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        """→ list of (68, 2) landmark arrays, one per detected face."""
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        s = self.DETECT_SCALE
        small = rgb if s == 1.0 else cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        out = []
        for r in self.detector(small, 0):
            rect = self.dlib.rectangle(int(r.left() / s), int(r.top() / s), int(r.right() / s), int(r.bottom() / s))
            shape = self.predictor(rgb, rect)
            out.append(np.array([[p.x, p.y] for p in shape.parts()], np.float64))
        return out

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        boxes = [landmarks_to_box(p) for p in self.landmarks(frame_bgr)]
        return _largest_first([b for b in boxes if b[3] >= 0.5 * self.min_face_px])


# face-alignment 1.5.0 fetches these into torch.hub.get_dir()/checkpoints on first use.
FA_WEIGHTS = {
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
    "s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
}


class FaceAlignmentDetector:
    """face-alignment (S3FD detector + 2DFAN4 landmarks); the box comes from the landmarks.

    `model` injects a ready `face_alignment.FaceAlignment` (tests drive one built with a
    random-weight FAN); without it the real one is built, after checking its weights exist.
    """

    def __init__(self, min_face_px: int, device: str = "cpu", model=None):
        self.min_face_px = min_face_px
        if model is None:
            self.require_weights()
            import face_alignment

            model = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                                 face_detector="sfd", flip_input=True, compile=False)
        self.model = model

    @staticmethod
    def weights_dir() -> Path:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"

    @classmethod
    def require_weights(cls) -> None:
        folder = cls.weights_dir()
        missing = [name for name in FA_WEIGHTS if not (folder / name).is_file()]
        if missing:
            urls = "\n".join(f"  {FA_WEIGHTS[m]}" for m in missing)
            raise RuntimeError(
                f"faces.backend=face_alignment needs {', '.join(missing)} in {folder} (torch hub cache; "
                f"TORCH_HOME moves it). Fetch them once online — run `python -c \"import face_alignment; "
                f"face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device='cpu')\"` — or copy "
                f"the files there from:\n{urls}\nOffline, choose faces.backend=haar or dlib.")

    def landmarks(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])  # face-alignment takes RGB
        pts = self.model.get_landmarks_from_image(rgb)
        return [np.asarray(p, np.float64)[:, :2] for p in (pts or [])]

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        boxes = [landmarks_to_box(p) for p in self.landmarks(frame_bgr)]
        return _largest_first([b for b in boxes if b[3] >= 0.5 * self.min_face_px])


def make_detector(backend: str, min_face_px: int, device: str | None = None):
    if backend == "haar":
        return HaarDetector(min_face_px)
    if backend == "dlib":
        return DlibDetector(min_face_px)
    if backend == "face_alignment":
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return FaceAlignmentDetector(min_face_px, device)
    raise ValueError(f"faces.backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")


# --- calibration (how HAAR_TO_FACE, TEMPLATE and FACE_ASPECT were measured) -----------------

def calibrate_box_transform(det: np.ndarray, truth: np.ndarray) -> BoxTransform:
    """Mean detector-box → true-box relation over pairs (N, 4), (N, 4)."""
    det, truth = np.asarray(det, float), np.asarray(truth, float)
    dx = ((truth[:, 0] + truth[:, 2] / 2) - (det[:, 0] + det[:, 2] / 2)) / det[:, 2]
    dy = ((truth[:, 1] + truth[:, 3] / 2) - (det[:, 1] + det[:, 3] / 2)) / det[:, 3]
    return BoxTransform(*(round(float(np.median(v)), 3) for v in (dx, dy, truth[:, 2] / det[:, 2],
                                                                  truth[:, 3] / det[:, 3])))


def calibrate_template(points: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """(N, 68, 2) landmarks and (N, 4) true boxes → (TEMPLATE of STABLE_POINTS, FACE_ASPECT)."""
    truth = np.asarray(truth, float)
    centre = truth[:, :2] + truth[:, 2:] / 2
    rel = (np.asarray(points, float)[:, STABLE_POINTS] - centre[:, None]) / truth[:, 3, None, None]
    template = np.median(rel, axis=0)
    return template.round(3), round(float(np.median(truth[:, 2] / truth[:, 3])), 3)


def _calibration_samples(paths: list[Path], stride: int):
    from nwt.data.media import iter_frames

    haar, dl = HaarDetector(40), DlibDetector(40)
    det, det_truth, pts, pts_truth = [], [], [], []
    for path in paths:
        episode = json.loads(path.with_name(path.stem + ".truth.json").read_text())
        truth = episode["face_boxes"]  # indexed at the renderer's fps: read the frames at that rate
        for k, frame in enumerate(iter_frames(str(path), episode["fps"])):
            if k % stride or k >= len(truth) or truth[k] is None:
                continue
            raw = haar.raw(frame)
            if len(raw):
                det.append(raw[0])
                det_truth.append(truth[k])
            lm = dl.landmarks(frame)
            if lm:
                pts.append(max(lm, key=lambda p: np.ptp(p[:, 1])))
                pts_truth.append(truth[k])
    return np.array(det), np.array(det_truth), np.array(pts), np.array(pts_truth)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Calibrate the haar box transform and the landmark template on "
                                             "rendered synthetic episodes (mp4 + truth.json), and print them.")
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--stride", type=int, default=5)
    args = ap.parse_args(argv)
    det, det_truth, pts, pts_truth = _calibration_samples(args.videos, args.stride)
    print(f"haar samples {len(det)}: HAAR_TO_FACE = {calibrate_box_transform(det, det_truth)}")
    template, aspect = calibrate_template(pts, pts_truth)
    print(f"dlib samples {len(pts)}: FACE_ASPECT = {aspect}\nTEMPLATE = {json.dumps(template.tolist())}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
