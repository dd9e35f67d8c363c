"""The official SyncNet's front ends: MFCC as python_speech_features computes them, face crops as
syncnet_python's run_pipeline.py cuts them (scoring with it: tests/eval/test_lipsync.py)."""
import cv2
import numpy as np
import pytest

from nwt.models.mfcc import mfcc
from nwt.models.syncnet import official_face_crops


def test_mfcc_matches_python_speech_features_conventions():
    rng = np.random.default_rng(0)
    T = 10
    sig = rng.normal(0, 3000, T * 640)
    feat = mfcc(sig, 16000)
    assert feat.shape == (4 * T - 1, 13)  # 1 + ceil((S − 400) / 160)
    # c0 is the log of the frame's total power (pre-emphasised, rectangular window, |rfft|² / 512)
    pre = np.append(sig[0], sig[1:] - 0.97 * sig[:-1])
    frame0 = pre[:400]
    energy0 = np.sum(np.abs(np.fft.rfft(frame0, 512)) ** 2) / 512
    assert feat[0, 0] == pytest.approx(np.log(energy0))
    assert np.isfinite(mfcc(np.zeros(2000), 16000)).all()  # silence: floored at eps, no -inf


def test_official_face_crops_are_bgr_224():
    frames = np.zeros((2, 256, 224, 3), np.uint8)
    frames[..., 0] = 255  # pure red
    out = official_face_crops(frames, face_scale=2.0, centre_shift=0.19)
    assert out.shape == (2, 3, 224, 224)
    assert out[:, 2].mean() > 200 and out[:, 0].max() == 0  # red lands in channel 2 (BGR)


def test_official_face_crops_follow_the_framing():
    """The crop is cut around where the framing puts the face: at the default framing the same
    pixels as the earlier constant-shift formula; a wider framing gives a smaller, higher box."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 256, 224, 3), dtype=np.uint8)
    out = official_face_crops(frames, 2.0, 0.19)
    bs, my, mx = 64.0, 128.0 - 0.19 * 2.0 * 64.0, 112.0  # the former formula at face_scale 2, shift 0.19
    bsi = int(bs * 1.4)
    padded = np.pad(frames[0, :, :, ::-1], ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=110)
    ref = padded[int(my + bsi - bs): int(my + bsi + bs * 1.8), int(mx + bsi - bs * 1.4): int(mx + bsi + bs * 1.4)]
    np.testing.assert_array_equal(out[0], cv2.resize(ref, (224, 224)).transpose(2, 0, 1))
    marked = np.zeros((1, 256, 224, 3), np.uint8)
    marked[0, 40:60, 100:124] = 255  # a bright face-sized patch near the top, as in a wide framing
    wide = official_face_crops(marked, 5.0, 1.5)  # face box rows 0.1–0.3 of the crop
    assert wide[0].mean() > 4 * official_face_crops(marked, 2.0, 0.19)[0].mean()
