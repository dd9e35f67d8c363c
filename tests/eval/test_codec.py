"""x264 rate–distortion beside the dVAE: real libx264 round trips on small smooth frames."""
import json
import math

import cv2
import numpy as np
import pytest

from nwt.eval.codec import (
    bits_at_psnr,
    compare_with_x264,
    decode_h264,
    encode_h264,
    nal_units,
    pick_clips,
    psnr_at_bits,
    video_stream_bytes,
    x264_rd_curve,
    x264_report,
)
from nwt.eval.metrics import psnr_db

H, W = 256, 224


def smooth_image(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
    """Random smooth RGB image: coarse noise upscaled bicubically."""
    coarse = rng.uniform(0, 255, (h // 16, w // 16, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def moving_clip(rng: np.random.Generator, n: int = 12) -> np.ndarray:
    """A smooth image panning 2 px per frame (inter prediction has work to do)."""
    big = smooth_image(rng, H + 2 * n, W + 2 * n)
    return np.stack([big[2 * t : 2 * t + H, 2 * t : 2 * t + W] for t in range(n)])


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_clip(np.random.default_rng(0))


def test_nal_units_and_stream_bytes_skip_sei():
    sps, pps, sei, idr = b"\x67" + b"\x01" * 9, b"\x68\x02\x03", b"\x06" + b"\x05" * 20, b"\x65" + b"\x07" * 30
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01" + sei + b"\x00\x00\x01" + idr
    assert nal_units(stream) == [sps, pps, sei, idr]
    assert video_stream_bytes(stream) == len(sps) + len(pps) + len(idr)


def test_round_trip_keeps_shape_and_is_near_lossless_at_low_crf(clip):
    stream = encode_h264(clip, 25, crf=0, intra_only=False)
    decoded = decode_h264(stream, H, W)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    assert psnr_db(clip, decoded) > 40  # only the yuv420p conversion loses anything at CRF 0
    assert 0 < video_stream_bytes(stream) < len(stream)  # the SEI banner is not counted


def test_psnr_rises_with_bits(clip):
    curve = x264_rd_curve([clip, clip[:6]], 25, crfs=(51, 40, 28, 16), intra_only=False)
    assert [r["crf"] for r in curve] == [51, 40, 28, 16]  # sorted by bits: higher CRF, fewer bits
    bits = [r["bits_per_frame"] for r in curve]
    psnrs = [r["psnr_db"] for r in curve]
    assert all(b1 < b2 for b1, b2 in zip(bits, bits[1:]))
    assert all(p1 < p2 for p1, p2 in zip(psnrs, psnrs[1:]))
    assert all(r["frames"] == len(clip) + 6 for r in curve)


def test_intra_only_costs_more_bits_on_static_content():
    static = np.repeat(smooth_image(np.random.default_rng(1))[None], 10, axis=0)
    inter = x264_rd_curve([static], 25, crfs=(28,), intra_only=False)[0]
    intra = x264_rd_curve([static], 25, crfs=(28,), intra_only=True)[0]
    assert intra["bits_per_frame"] > 3 * inter["bits_per_frame"]
    assert intra["psnr_db"] < inter["psnr_db"] + 1  # and buys no quality for them (skip blocks copy the I-frame)


def test_eval_stride_uses_the_dvae_psnr_definition(clip):
    row = x264_rd_curve([clip], 25, crfs=(30,), intra_only=True, eval_stride=5)[0]
    decoded = decode_h264(encode_h264(clip, 25, 30, intra_only=True), H, W)
    assert row["psnr_db"] == pytest.approx(psnr_db(clip[::5], decoded[::5]))


HAND_CURVE = [dict(crf=c, bits_per_frame=b, psnr_db=p)
              for c, b, p in ((40, 100, 20.0), (30, 400, 30.0), (20, 1600, 40.0))]


def test_interpolation_on_a_hand_made_curve():
    assert psnr_at_bits(HAND_CURVE, 200) == pytest.approx(25.0)  # halfway in log2(bits)
    assert psnr_at_bits(HAND_CURVE, 800) == pytest.approx(35.0)
    assert psnr_at_bits(HAND_CURVE, 400) == pytest.approx(30.0)
    assert bits_at_psnr(HAND_CURVE, 35.0) == pytest.approx(800.0)
    assert bits_at_psnr(HAND_CURVE, 22.5) == pytest.approx(100 * 2 ** 0.5)
    assert bits_at_psnr(list(reversed(HAND_CURVE)), 25.0) == pytest.approx(200.0)  # order does not matter


def test_out_of_range_is_none_not_extrapolated():
    assert psnr_at_bits(HAND_CURVE, 50) is None and psnr_at_bits(HAND_CURVE, 3200) is None
    assert bits_at_psnr(HAND_CURVE, 19.9) is None and bits_at_psnr(HAND_CURVE, 41.0) is None
    out = compare_with_x264(HAND_CURVE, HAND_CURVE, dvae_bits_per_frame=3584, dvae_psnr_db=18.0)
    for key in ("x264", "x264_intra"):
        assert out[key]["psnr_db_at_same_bits"] is None and out[key]["bits_at_same_psnr"] is None
        assert "outside sweep" in out[key]["note"]
    inside = compare_with_x264(HAND_CURVE, HAND_CURVE, 200, 35.0)["x264"]
    assert inside["psnr_db_at_same_bits"] == pytest.approx(25.0)
    assert inside["bits_at_same_psnr"] == pytest.approx(800.0)
    assert inside["bits_ratio_x264_over_dvae"] == pytest.approx(4.0)
    assert "note" not in inside


def test_pick_clips_spreads_whole_clips_under_the_budget():
    assert pick_clips([100, 100, 100], None) == [0, 1, 2]
    assert pick_clips([100, 100, 100], 300) == [0, 1, 2]
    assert pick_clips([100, 100, 100, 100, 100], 300) == [0, 2, 4]
    assert pick_clips([500, 50, 400], 100) == [1]  # nothing spread fits: the shortest clip


def test_report_writes_dvc_plot_rows(tmp_path, clip):
    out = tmp_path / "rd_x264.json"
    metrics = x264_report([clip[:8]], 25, dvae_bits_per_frame=3584.0, dvae_psnr_db=30.0, out_json=out, crfs=(45, 30))
    rows = json.loads(out.read_text())
    assert {r["codec"] for r in rows} == {"x264", "x264_intra", "dvae"}
    assert all(set(r) >= {"codec", "bits_per_frame", "psnr_db"} for r in rows)
    dvae_rows = [r for r in rows if r["codec"] == "dvae"]
    assert dvae_rows == [dict(codec="dvae", bits_per_frame=3584.0, psnr_db=30.0, crf=None)]
    for key in ("x264", "x264_intra"):
        m = metrics[key]
        assert {"psnr_db_at_same_bits", "bits_at_same_psnr"} <= set(m)
        assert m["frames"] == 8 and m["clips"] == 1
        for v in (m["psnr_db_at_same_bits"], m["bits_at_same_psnr"]):
            assert v is None or math.isfinite(v)
