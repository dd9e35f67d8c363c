"""The face backends on real small data: a rendered synthetic episode (frames + true face boxes).

haar and dlib run for real; face_alignment runs its real code (get_landmarks_from_image: crop,
FAN forward with flip, heatmaps → landmarks) with a random-weight FAN, since its weights cannot
be downloaded offline, and its missing-weights error is checked.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import repo_section, synthetic_config

from nwt.data import face_backends as fb
from nwt.data.faces import box_iou, episode_faces
from nwt.data.media import iter_frames
from nwt.data.synthetic import render_episode
from nwt.params import FacesParams, with_changes

CFG = with_changes(repo_section("faces", FacesParams), backend="haar", stride=5, min_face_px=40, face_scale=2.0,
                   smooth_s=0.5, max_motion=1.0)
FPS = synthetic_config().fps


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces_ep")
    render_episode("fb", 3, 6.0, out, synthetic_config())
    truth = json.loads((out / "fb.truth.json").read_text())
    faces = [k for k, b in enumerate(truth["face_boxes"]) if b is not None]
    pick = set(faces[:: max(1, len(faces) // 6)][:6])
    frames = {k: f for k, f in enumerate(iter_frames(str(out / "fb.mp4"), FPS)) if k in pick}
    return dict(dir=out, truth=truth, frames=frames)


def _ious(detector, episode):
    out = []
    for k, frame in episode["frames"].items():
        boxes = detector(frame)
        assert boxes.ndim == 2 and boxes.shape[1] == 4
        out.append(box_iou(boxes[0], np.array(episode["truth"]["face_boxes"][k])) if len(boxes) else 0.0)
    return np.array(out)


def test_haar_box_transform_matches_the_face_ellipse(episode):
    det = fb.HaarDetector(40)
    calibrated = _ious(det, episode)
    raw = _ious(det.raw, episode)
    assert (calibrated > 0.7).all(), calibrated
    assert calibrated.mean() > raw.mean() + 0.1, (calibrated, raw)


def test_dlib_finds_the_synthetic_face_and_its_landmark_box_fits(episode):
    det = fb.DlibDetector(40)
    frame = next(iter(episode["frames"].values()))
    pts = det.landmarks(frame)
    assert len(pts) == 1 and pts[0].shape == (68, 2)
    ious = _ious(det, episode)
    assert (ious > 0.8).all(), ious


def test_landmark_box_ignores_the_mouth_and_follows_scale_and_shift():
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 0.2, (68, 2))
    pts[fb.STABLE_POINTS] = fb.TEMPLATE
    pts = pts * 150 + [320, 180]  # a 150-px face centred at (320, 180)
    box = fb.landmarks_to_box(pts)
    np.testing.assert_allclose(box, [320 - 0.5 * fb.FACE_ASPECT * 150, 180 - 75, fb.FACE_ASPECT * 150, 150], atol=1e-6)
    moved = pts.copy()
    moved[48:68, 1] += 30  # the mouth opens wide; chin follows
    moved[5:12, 1] += 30
    np.testing.assert_allclose(fb.landmarks_to_box(moved), box, atol=1e-6)


def test_face_alignment_without_weights_names_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(RuntimeError) as err:
        fb.make_detector("face_alignment", 40, device="cpu")
    msg = str(err.value)
    for name in fb.FA_WEIGHTS:
        assert name in msg
    assert str(tmp_path / "checkpoints") in msg and "online" in msg
    (tmp_path / "checkpoints").mkdir()
    for name in fb.FA_WEIGHTS:
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    fb.FaceAlignmentDetector.require_weights()  # present → no error


class _TrueBoxDetector:
    """Stands in for S3FD: returns the true face box as (x1, y1, x2, y2, score)."""

    def __init__(self, box):
        x, y, w, h = box
        self.boxes = [np.array([x, y, x + w, y + h, 0.99])]

    reference_scale = 195  # face_alignment.utils.REFERENCE_SCALE

    def detect_from_image(self, image):
        return self.boxes


def test_face_alignment_random_fan_runs_the_real_landmark_path(episode):
    import face_alignment
    from face_alignment.models import FAN

    k, frame = next(iter(episode["frames"].items()))
    torch.manual_seed(0)
    fa = face_alignment.FaceAlignment.__new__(face_alignment.FaceAlignment)  # the real class, no download
    fa.device, fa.dtype, fa.flip_input, fa.max_batch_size, fa.verbose = "cpu", torch.float32, True, 1, False
    fa.landmarks_type = face_alignment.LandmarksType.TWO_D
    fa.face_detector = _TrueBoxDetector(episode["truth"]["face_boxes"][k])
    fa.face_alignment_net = FAN(4).eval()
    det = fb.FaceAlignmentDetector(40, model=fa)
    pts = det.landmarks(frame)
    assert len(pts) == 1 and pts[0].shape == (68, 2) and np.isfinite(pts[0]).all()
    boxes = fb.FaceAlignmentDetector(0, model=fa)(frame)
    assert boxes.shape == (1, 4) and np.isfinite(boxes).all()
    np.testing.assert_allclose(boxes[0], fb.landmarks_to_box(pts[0]))
    # random heatmaps still land inside the crop FAN was given (heatmap → image transform)
    x, y, w, h = episode["truth"]["face_boxes"][k]
    assert (pts[0][:, 0] > x - w).all() and (pts[0][:, 0] < x + 2 * w).all()


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="haar, dlib, face_alignment"):
        fb.make_detector("mtcnn", 40)


def test_episode_faces_on_a_rendered_episode(episode):
    truth_path = episode["dir"] / "fb.truth.json"
    shots = [(i, s["start_frame"], s["end_frame"]) for i, s in enumerate(episode["truth"]["shots"])]
    res = episode_faces(dict(path=str(episode["dir"] / "fb.mp4"), truth=str(truth_path), shots=shots), CFG, FPS)
    kinds = [s["kind"] for s in episode["truth"]["shots"]]
    for s, kind in zip(res["shots"], kinds):
        assert (s["track"].status == "kept") == (kind == "face"), (s["track"].reason, kind)
        assert (s["thumb"] is not None) == (kind == "face")
        if s["thumb"] is not None:
            assert len(s["thumb"]) < 20_000  # JPEG bytes: the Ray result stays small
    sc = res["score"]
    assert sc["found"] >= 0.97 * sc["face_samples"] > 0
    assert np.mean(sc["ious"]) > 0.75 and all(sc["in_crop"])
