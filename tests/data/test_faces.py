import numpy as np
from conftest import repo_section

from nwt.constants import CROP_H, CROP_W
from nwt.data.faces import box_iou, contact_sheet, face_motion, track_shot
from nwt.geometry import crop_frame, crop_window
from nwt.params import FacesParams, with_changes

# the values these tests' numbers are worked out for, whatever params.yaml says
CFG = with_changes(repo_section("faces", FacesParams), min_face_px=40, face_scale=2.0, centre_shift=0.19, smooth_s=0.5,
                   max_motion=1.0)


def _boxes(*boxes):
    return np.array(boxes, np.float64).reshape(-1, 4)


def test_steady_face_is_kept_and_misses_are_interpolated():
    sampled = list(range(0, 50, 5))
    boxes = [_boxes([100, 80, 60, 60]) if i != 3 else _boxes() for i in range(len(sampled))]
    tr = track_shot(50, sampled, boxes, CFG, fps=25)
    assert tr.status == "kept"
    assert tr.crop.shape == (50, 3)
    np.testing.assert_allclose(tr.crop[:, 2], 120.0)  # face_scale × face height, missing sample filled
    x0, y0, w, h = crop_window(tr.crop[20])
    assert abs(w / h - CROP_W / CROP_H) < 1e-9
    np.testing.assert_allclose(tr.crop[:, :2], [[130.0, 110.0 + 0.19 * 60]] * 50)  # centre_shift face heights lower


def test_the_framing_params_move_and_scale_the_crop():
    """centre_shift lowers the crop centre by that many face heights, face_scale sets its height."""
    sampled = list(range(0, 50, 5))
    boxes = [_boxes([100, 80, 60, 60])] * len(sampled)
    wide = track_shot(50, sampled, boxes, with_changes(CFG, face_scale=4.5, centre_shift=1.2), fps=25)
    np.testing.assert_allclose(wide.crop[0], [130.0, 110.0 + 1.2 * 60, 4.5 * 60])


def test_rejections_have_reasons():
    sampled = list(range(0, 50, 5))
    none = track_shot(50, sampled, [_boxes()] * 10, CFG, 25)
    assert (none.status, none.reason) == ("rejected", "no_face")
    two = track_shot(50, sampled, [_boxes([100, 80, 60, 60], [300, 80, 55, 55])] * 10, CFG, 25)
    assert two.reason == "multiple_faces"
    small = track_shot(50, sampled, [_boxes([100, 80, 20, 20])] * 10, CFG, 25)
    assert small.reason == "face_too_small"


def test_a_small_background_face_does_not_reject_the_shot():
    tr = track_shot(50, list(range(0, 50, 5)), [_boxes([100, 80, 80, 80], [300, 20, 20, 20])] * 10, CFG, 25)
    assert tr.status == "kept"


def test_crop_is_256_by_224_and_pads_outside_the_frame():
    frame = np.full((360, 640, 3), 7, np.uint8)
    out = crop_frame(frame, np.array([10.0, 10.0, 300.0]))  # window mostly outside the frame
    assert out.shape == (CROP_H, CROP_W, 3)
    assert (out == 7).all()


def test_iou():
    assert box_iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == 1.0
    assert box_iou(np.array([0, 0, 10, 10]), np.array([20, 20, 5, 5])) == 0.0
    assert abs(box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 10, 10])) - 1 / 3) < 1e-9


def test_a_face_that_keeps_moving_is_too_much_motion():
    sampled = list(range(0, 100, 5))  # 4 s at 25 fps
    # 60-px face walking right at 2 face heights per second (120 px/s = 24 px per 0.2 s sample)
    walking = [_boxes([100 + 24 * i, 80, 60, 60]) for i in range(len(sampled))]
    tr = track_shot(100, sampled, walking, CFG, fps=25)
    assert (tr.status, tr.reason) == ("rejected", "too_much_motion")
    assert abs(tr.motion - 2.0) < 1e-9 and "2.00 face heights/s" in tr.detail
    # the synthetic presenter's sway (≈0.05 face heights/s measured) is kept
    sway = [_boxes([100 + 3 * np.sin(i / 3), 80 + 2 * np.cos(i / 4), 60, 60]) for i in range(len(sampled))]
    kept = track_shot(100, sampled, sway, CFG, fps=25)
    assert kept.status == "kept" and kept.motion < 0.2


def test_one_stray_detection_is_not_motion():
    sampled = list(range(0, 100, 5))
    boxes = [_boxes([100, 80, 60, 60]) for _ in sampled]
    boxes[7] = _boxes([400, 200, 60, 60])  # a single wild detection (jumps out and back)
    assert track_shot(100, sampled, boxes, CFG, fps=25).status == "kept"
    assert face_motion(np.array([0.0]), np.array([[0, 0, 10, 10.0]]), 25) == 0.0


def test_contact_sheet_grid():
    thumb = np.zeros((CROP_H // 2, CROP_W // 2, 3), np.uint8)
    shots = [dict(shot=i, thumb=thumb if i % 2 == 0 else None, reason="ok" if i % 2 == 0 else "no_face")
             for i in range(8)]
    sheet = contact_sheet(shots, columns=6)
    assert sheet.shape == (2 * (CROP_H // 2 + 4) + 4, 6 * (CROP_W // 2 + 4) + 4, 3)
    assert contact_sheet([]).ndim == 3
