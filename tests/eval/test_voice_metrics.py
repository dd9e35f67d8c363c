"""nwt.eval.voices on the rendered presenter (tests/eval/presenter_data.py): the figures of one
generation, a condition's summary and ratios to the own voice, the seed spread, and the real
speech folder read or reported absent."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from presenter_data import SPF, presenter_clip, presenter_clips, sync_path  # noqa: F401 (fixtures)

from nwt.constants import Timing
from nwt.eval.lipsync import load_scorer
from nwt.eval.look import LookReference
from nwt.eval.voices import (
    Condition,
    Scored,
    load_real_speech,
    ratio,
    real_speech_files,
    score_generation,
    seed_spread,
    voice_metrics,
)
from nwt.geometry import mouth_box

TIMING = Timing(25, 16000)
MOUTH = mouth_box(2.0, 0.19)  # the default framing's mouth box
REAL_GT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nwt_samples" / "gt"


@pytest.fixture(scope="module")
def look(presenter_clips):  # noqa: F811
    """Identity 0's look (clips 0–1 as reference, clip 2 held out) and identity 1's (3–4, 5)."""
    ref = LookReference.from_frames({"a": np.concatenate([presenter_clips[0][0], presenter_clips[1][0]]),
                                     "b": np.concatenate([presenter_clips[3][0], presenter_clips[4][0]])})
    return ref.calibrate({"a": presenter_clips[2][0], "b": presenter_clips[5][0]})


def test_a_generation_in_sync_scores_above_one_out_of_sync(presenter_clips, sync_path, look):  # noqa: F811
    scorer = load_scorer(sync_path)[0]
    frames, audio = presenter_clips[2]
    synced = score_generation(frames, audio, "a", scorer, TIMING, MOUTH, look, voice="v", engine="e", sex="f")
    other = presenter_clips[1][1][: len(audio)]  # another clip's speech under these frames
    off = score_generation(frames, other, "a", scorer, TIMING, MOUTH, look)
    assert synced.mouth_audio_corr > 0.5 > off.mouth_audio_corr
    assert synced.look_distance.shape == synced.look_ok.shape == (len(frames),)
    assert synced.look_ok.mean() >= 0.9  # the held-out clip that set the threshold: 95 % under it
    assert (synced.voice, synced.engine, synced.sex) == ("v", "e", "f")
    assert np.isfinite([synced.lse_c, synced.lse_d]).all()


def test_another_look_fails_and_frames_beyond_the_audio_are_dropped(presenter_clips, sync_path, look):  # noqa: F811
    scorer = load_scorer(sync_path)[0]
    frames, audio = presenter_clips[5]  # identity 1, judged against identity 0's look
    wrong = score_generation(frames, audio[: 40 * SPF], "a", scorer, TIMING, MOUTH, look)
    assert wrong.look_ok.shape == (40,) and not wrong.look_ok.any()
    right = score_generation(frames, audio, "b", scorer, TIMING, MOUTH, look)
    assert right.look_distance.mean() < wrong.look_distance.mean()
    untrained = score_generation(frames, audio, None, scorer, TIMING, MOUTH, look)  # no episode: no look
    assert untrained.look_ok is None and untrained.look_distance is None


def _scored(lse_c: float, corr: float, voice: str = "", engine: str = "", ok=(True, True), distance=1.0) -> Scored:
    ok = np.array(ok)
    return Scored(lse_c, 1.0 - lse_c, corr, np.full(len(ok), distance), ok, voice, engine, "f")


def test_voice_metrics_ratios_worst_voice_and_first_frames():
    own, unseen = Condition(), Condition()
    own.add(_scored(0.5, 0.6))
    own.add(_scored(0.5, 0.6, ok=(False, True)))
    unseen.add(_scored(0.45, 0.6, "f4", "espeak", ok=(False, False)))
    unseen.add(_scored(0.35, 0.3, "kal", "flite"))
    unseen.add(_scored(0.40, 0.3, "f4", "espeak"))
    out = voice_metrics(own, unseen, None, real_reason="no real-speech folder at x", unseen_gt_lse_c=0.75)
    assert out["own"]["lse_c"] == 0.5 and out["own"]["look_ok_rate"] == 0.75 and out["own"]["clips"] == 2
    u = out["unseen"]
    assert u["lse_c"] == 0.4 and u["lse_c_ratio_to_own"] == 0.8 and u["mouth_audio_corr_ratio_to_own"] == 0.6667
    assert u["lse_c_ratio_to_own_min"] == 0.7  # flite kal: 0.35 / 0.5
    assert (u["voices"], u["engines"], u["clips"], u["gt_lse_c"]) == (2, 2, 3, 0.75)
    assert u["per_voice"]["f4"]["lse_c"] == 0.425 and u["per_voice"]["f4"]["engine"] == "espeak"
    assert u["look_ok_rate"] == round(4 / 6, 4)
    real = out["real"]
    assert real["lse_c"] is None and real["lse_c_ratio_to_own"] is None and real["look_ok_rate"] is None
    assert real["clips"] == 0 and real["reason"] == "no real-speech folder at x"
    assert own.first_frames_ok() == [True, False] and unseen.first_frames_ok() == [False, True, True]


def test_clips_under_several_seeds_count_once():
    own, unseen = Condition(), Condition()
    own.add(_scored(0.5, 0.6))
    for seed_lse in ((0.4, 0.3), (0.5, 0.2)):  # two seeds of the same two clips
        for key, (lse_c, voice) in zip(("a", "b"), ((seed_lse[0], "f4"), (seed_lse[1], "kal"))):
            scored = _scored(lse_c, 0.5, voice, "espeak")
            scored.clip = key
            unseen.add(scored)
    u = voice_metrics(own, unseen, None)["unseen"]
    assert (u["clips"], u["generations"]) == (2, 4)
    assert u["per_voice"]["f4"]["lse_c"] == 0.45 and u["per_voice"]["f4"]["clips"] == 1  # mean over its seeds
    assert u["lse_c_ratio_to_own_min"] == 0.5  # kal: (0.3 + 0.2) / 2 / 0.5


def test_looks_scored_before_calibration_are_judged_after(presenter_clips, sync_path):  # noqa: F811
    scorer = load_scorer(sync_path)[0]
    look = LookReference.from_frames({"a": np.concatenate([presenter_clips[0][0], presenter_clips[1][0]])})
    cond = Condition()
    cond.add(score_generation(*presenter_clips[2], "a", scorer, TIMING, MOUTH, look))
    assert cond.items[0].look_distance is not None and cond.items[0].look_ok is None  # no threshold yet
    assert cond.figures()["look_ok_rate"] is None and cond.first_frames_ok() == []
    look.calibrate({"a": presenter_clips[2][0]})
    cond.set_thresholds(look)
    assert cond.figures()["look_ok_rate"] >= 0.9 and cond.first_frames_ok() in ([True], [False])


def test_voice_metrics_without_unseen_clips_or_looks():
    own = Condition()
    own.add(Scored(0.5, 0.5, 0.6))  # no look reference
    out = voice_metrics(own, Condition(), Condition(), unseen_reason="no unseen-voice clips")
    assert out["own"]["look_ok_rate"] is None and out["own"]["look_distance"] is None
    assert out["unseen"]["reason"] == "no unseen-voice clips" and out["unseen"]["lse_c_ratio_to_own_min"] is None
    assert out["unseen"]["voices"] == 0 and out["real"]["reason"] == "no real clips"
    assert own.first_frames_ok() == []
    with pytest.raises(ValueError, match="no generations"):
        Condition().figures()


def test_ratio_and_seed_spread():
    assert ratio(0.4, 0.5) == 0.8 and ratio(None, 0.5) is None and ratio(0.4, 0.0) is None
    out = seed_spread([{"lse_c_ratio": 0.70, "lse_d_ratio": 1.5}, {"lse_c_ratio": 0.74, "lse_d_ratio": 1.4},
                       {"lse_c_ratio": 0.66, "lse_d_ratio": 1.6}])
    assert out["lse_c_ratio"] == 0.7 and out["lse_c_ratio_sd"] == 0.04  # sample sd (ddof 1)
    assert out["lse_d_ratio"] == 1.5 and out["lse_d_ratio_sd"] == 0.1
    assert seed_spread([{"lse_c_ratio": 0.7}]) == {"lse_c_ratio": 0.7, "lse_c_ratio_sd": 0.0}
    with pytest.raises(ValueError):
        seed_spread([])


def test_real_speech_absent_or_empty_gives_a_reason(tmp_path):
    clips, reason = load_real_speech(tmp_path / "nowhere", 16000)
    assert clips == [] and "no real-speech folder" in reason and "real_speech_dir" in reason
    (tmp_path / "README.md").write_text("not speech")
    clips, reason = load_real_speech(tmp_path, 16000)
    assert clips == [] and "holds no audio or video files" in reason
    assert real_speech_files("") == ([], "evaluate.real_speech_dir is empty")


def test_real_speech_is_read_mono_at_the_pipeline_rate(tmp_path, presenter_clips):  # noqa: F811
    audio = presenter_clips[0][1]  # 2 s at 16 kHz → stereo 44.1 kHz, as the real clips' AAC
    up = np.interp(np.arange(int(2.0 * 44100)) / 44100, np.arange(len(audio)) / 16000, audio)
    sf.write(tmp_path / "b.wav", np.stack([up, 0.5 * up], 1), 44100)
    sf.write(tmp_path / "a.flac", up, 44100)
    (tmp_path / "notes.txt").write_text("skipped")
    clips, reason = load_real_speech(tmp_path, 16000)
    assert reason == "" and [name for name, _ in clips] == ["a", "b"]
    for _, got in clips:
        assert got.dtype == np.float32 and got.ndim == 1 and abs(len(got) - 32000) <= 16
    a, b = clips[0][1], clips[1][1]
    assert np.corrcoef(a[:31000], audio[:31000])[0, 1] > 0.95  # the same speech back
    scale = float(b @ a / (a @ a))  # stereo (L, L/2) mixed to mono by ffmpeg: (L + R) / √2 = 1.06 L
    assert 0.7 < scale < 1.2 and np.abs(b - scale * a).max() < 0.01


@pytest.mark.skipif(not REAL_GT.is_dir(), reason="../shared/data/nwt_samples/gt is absent (real test footage)")
def test_the_real_speech_test_set_reads():
    clips, reason = load_real_speech(REAL_GT, 16000)
    assert reason == "" and len(clips) == 10
    seconds = sum(len(a) for _, a in clips) / 16000
    assert 55 < seconds < 67  # 61 s in all (its README)
    assert all(np.sqrt(np.mean(a ** 2)) > 0.01 for _, a in clips)  # speech, not silence
