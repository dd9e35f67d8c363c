"""Crop geometry shared by the data stages, the models and evaluation: where the 256×224 face
crop sits relative to the detected face (the framing: params faces.face_scale and
faces.centre_shift), where the mouth then sits in the crop, and how the crop is cut out of a frame.

Everything that looks at the mouth derives its box from the framing here (`sync_mouth_box`,
`mouth_box`), so that a changed framing keeps measuring the mouth."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nwt.constants import CROP_H, CROP_W

Box = tuple[tuple[float, float], tuple[float, float]]  # (row0, row1), (col0, col1): fractions of the crop


@dataclass(frozen=True)
class FaceRegion:
    """A region of the face in face heights, relative to the face-box centre (+ = down): rows
    from `top` to `bottom`, columns ± `half_width`. Fixed to the face, it lands in the crop
    wherever the framing (faces.face_scale, faces.centre_shift) puts the face."""

    top: float
    bottom: float
    half_width: float


# Measured on the default framing's crops (face_scale 2.0, centre_shift 0.19: the face box is
# rows 0.155–0.655 of the crop) and chosen so that that framing gives exactly the boxes these
# regions were first written as, in crop fractions:
# the sync expert's input, nose tip to below the chin, cheek to cheek: rows 0.375–0.75, cols 0.25–0.75
SYNC_MOUTH_REGION = FaceRegion(top=-0.06, bottom=0.69, half_width=0.4375)
# the mouth alone (the mouth measures: darkness against loudness): rows 0.48–0.60, cols 0.38–0.62
MOUTH_REGION = FaceRegion(top=0.15, bottom=0.39, half_width=0.21)
BOX_DECIMALS = 6  # boxes are rounded so that the default framing gives the literal fractions above


def face_in_crop(face_scale: float, centre_shift: float) -> tuple[float, float]:
    """Where the faces stage puts the face box in the crop: (centre row, height), fractions of the
    crop height. The crop is face_scale face heights high, its centre centre_shift face heights
    below the face centre (params faces.face_scale, faces.centre_shift)."""
    if face_scale <= 0:
        raise ValueError(f"faces.face_scale must be > 0, got {face_scale}")
    height = 1.0 / face_scale
    return 0.5 - centre_shift * height, height


def region_box(region: FaceRegion, face_scale: float, centre_shift: float) -> Box:
    """A face region → its box in crop fractions under a framing, clipped to the crop."""
    centre, height = face_in_crop(face_scale, centre_shift)
    half_w = region.half_width * height * CROP_H / CROP_W  # face heights → crop widths

    def clip(a: float, b: float) -> tuple[float, float]:
        return round(min(max(a, 0.0), 1.0), BOX_DECIMALS), round(min(max(b, 0.0), 1.0), BOX_DECIMALS)

    rows = clip(centre + region.top * height, centre + region.bottom * height)
    cols = clip(0.5 - half_w, 0.5 + half_w)
    if rows[1] - rows[0] < 1e-3 or cols[1] - cols[0] < 1e-3:
        raise ValueError(f"face_scale {face_scale}, centre_shift {centre_shift} puts the mouth outside the crop "
                         f"(face box centre at {centre:.2f}, height {height:.2f} of the crop)")
    return rows, cols


def sync_mouth_box(face_scale: float, centre_shift: float) -> Box:
    """The sync expert's mouth box (nose tip to below the chin) under a framing, crop fractions."""
    return region_box(SYNC_MOUTH_REGION, face_scale, centre_shift)


def mouth_box(face_scale: float, centre_shift: float) -> Box:
    """The mouth measures' box (the mouth alone) under a framing, crop fractions."""
    return region_box(MOUTH_REGION, face_scale, centre_shift)


def crop_centre(box: np.ndarray, face_scale: float, centre_shift: float) -> np.ndarray:
    """(T, 4) face boxes x, y, w, h → (T, 3) crop centre x, y and crop height: the crop is
    face_scale face heights high, centred centre_shift face heights below the face centre."""
    cx = box[:, 0] + box[:, 2] / 2
    cy = box[:, 1] + box[:, 3] / 2 + centre_shift * box[:, 3]
    return np.stack([cx, cy, face_scale * box[:, 3]], axis=1)


def crop_window(crop: np.ndarray) -> tuple[float, float, float, float]:
    """(cx, cy, h) → x0, y0, width, height of the 256:224 (H:W) crop rectangle."""
    cx, cy, h = crop
    w = h * CROP_W / CROP_H
    return cx - w / 2, cy - h / 2, w, h


def crop_frame(frame: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Cut the crop window out of a frame and resize it to 256×224 in one affine warp.

    Parts outside the frame are filled by replicating the border (a crop near the edge of a
    wide shot must not fail).
    """
    x0, y0, w, h = crop_window(crop)
    scale = CROP_H / h
    matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, matrix, (CROP_W, CROP_H), flags=interp, borderMode=cv2.BORDER_REPLICATE)
