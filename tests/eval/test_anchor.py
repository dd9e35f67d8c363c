"""The codec anchor: the ground truth through intra-only libx264, as evaluate scores it."""
import numpy as np
import pytest
from presenter_data import presenter_clip

from nwt.eval.anchor import x264_round_trip
from nwt.eval.metrics import mouth_darkness, pearson, psnr_db
from nwt.geometry import mouth_box

MOUTH = mouth_box(2.0, 0.19)  # params.yaml's framing, which presenter_clip draws


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return presenter_clip(np.random.default_rng(0), 20)[0]


def test_round_trip_keeps_every_frame_and_loses_more_at_higher_crf(clip):
    psnrs = []
    for crf in (20, 40, 51):
        out = x264_round_trip(clip, 25, crf)
        assert out.shape == clip.shape and out.dtype == np.uint8
        psnrs.append(psnr_db(clip, out))
    assert psnrs[0] > psnrs[1] > psnrs[2], psnrs
    assert psnrs[0] > 35


def test_the_anchor_keeps_the_moving_mouth_at_the_default_crf(clip):
    out = x264_round_trip(clip, 25, 40)
    truth = mouth_darkness(clip, MOUTH)
    assert truth.std() > 1.0  # the clip's mouth does move
    assert pearson(truth, mouth_darkness(out, MOUTH)) > 0.9
