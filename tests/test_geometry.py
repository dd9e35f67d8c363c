"""Crop geometry: the mouth boxes follow the framing and equal the former constants at the default."""
import numpy as np
import pytest
from conftest import repo_section

from nwt.constants import CROP_H, CROP_W
from nwt.geometry import face_in_crop, mouth_box, sync_mouth_box
from nwt.params import FacesParams


def test_default_framing_gives_the_former_boxes_exactly():
    """params.yaml's framing gives exactly the boxes that were constants (so the default figures
    do not move), down to the pixel indices each user takes."""
    faces = repo_section("faces", FacesParams)
    assert (faces.face_scale, faces.centre_shift) == (2.0, 0.19)
    assert sync_mouth_box(2.0, 0.19) == ((0.375, 0.75), (0.25, 0.75))
    assert mouth_box(2.0, 0.19) == ((0.48, 0.60), (0.38, 0.62))
    (r0, r1), (c0, c1) = sync_mouth_box(2.0, 0.19)
    assert [round(r0 * CROP_H), round(r1 * CROP_H), round(c0 * CROP_W), round(c1 * CROP_W)] == [96, 192, 56, 168]
    (r0, r1), (c0, c1) = mouth_box(2.0, 0.19)
    assert [int(r0 * CROP_H), int(r1 * CROP_H), int(c0 * CROP_W), int(c1 * CROP_W)] == [122, 153, 85, 138]


@pytest.mark.parametrize("face_scale, centre_shift", [(2.0, 0.19), (3.0, 0.6), (4.5, 1.2), (1.6, 0.0)])
def test_boxes_stay_on_the_same_part_of_the_face(face_scale, centre_shift):
    """Whatever the framing, a box sits at the same place in face-box coordinates (0 = hairline,
    1 = chin; columns in face heights from the centre line)."""
    centre, height = face_in_crop(face_scale, centre_shift)
    top = centre - height / 2
    for box, rows_face, half_width in ((mouth_box, (0.65, 0.89), 0.21), (sync_mouth_box, (0.44, 1.19), 0.4375)):
        (r0, r1), (c0, c1) = box(face_scale, centre_shift)
        assert ((r0 - top) / height, (r1 - top) / height) == pytest.approx(rows_face, abs=1e-5)
        assert (c1 - c0) / 2 * CROP_W / CROP_H / height == pytest.approx(half_width, abs=1e-5)


def test_a_wider_framing_moves_the_box_up_and_shrinks_it():
    (r0, r1), (c0, c1) = mouth_box(4.5, 1.2)
    (d0, d1), (e0, e1) = mouth_box(2.0, 0.19)
    assert r1 < d0  # wholly above the default box
    assert (r1 - r0) < (d1 - d0) / 2 and (c1 - c0) < (e1 - e0) / 2


def test_boxes_are_clipped_to_the_crop_and_a_lost_mouth_is_an_error():
    (r0, r1), _ = sync_mouth_box(1.2, 0.0)  # a face larger than the crop: the box runs off the bottom
    assert r1 == 1.0 and 0 < r0 < 1
    with pytest.raises(ValueError, match="outside the crop"):
        mouth_box(2.0, -2.0)  # the face pushed below the crop
    with pytest.raises(ValueError, match="face_scale must be > 0"):
        face_in_crop(0.0, 0.19)
    assert np.isfinite(face_in_crop(2.0, 0.19)).all()
