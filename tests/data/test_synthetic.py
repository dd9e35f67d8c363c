"""The synthetic presenter corpus, checked on real rendered episodes (a few seconds each).

What later stages rely on: the mp4 decodes with the promised frame count, size and audio; the
truth JSON is self-consistent and reproducible; the Haar face detector the offline pipeline uses
finds the presenter where the truth says and nothing on slides; one presenter across episodes;
the mouth follows the audio; cuts are visible to a content detector.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import synthetic_config

from nwt.data.synthetic import SyntheticConfig, render_episode
from nwt.data.synthetic import episode as episode_mod

MAIN_SEED, MAIN_SECONDS = 1, 10.0  # seed 1: wide, close, slide, wide — every kind of cut
OTHER_SEED = 7
SHORT_SECONDS = 6.0
HAAR = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
MIN_PAUSE_S = 0.4
SPEECH_DBFS = -40.0


def _render(out: Path, eid: str, seed: int, seconds: float, config: SyntheticConfig | None = None):
    summary = render_episode(eid, seed, seconds, out, config or synthetic_config())
    truth = json.loads((out / f"{eid}.truth.json").read_text())
    return summary, truth, out / f"{eid}.mp4"


def _frames(mp4: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(mp4))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def _audio(mp4: Path, sample_rate: int) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(mp4), "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def _detect(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # no equalizeHist: it broke the darkest skin
    faces = _detect.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
    return np.asarray(faces).reshape(-1, 4)


_detect.cascade = cv2.CascadeClassifier(HAAR)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    main = _render(out, "main", MAIN_SEED, MAIN_SECONDS)
    return {
        "out": out,
        "main": main,
        "main_frames": _frames(main[2]),
        "again": _render(out / "again", "main", MAIN_SEED, MAIN_SECONDS),
        "other": _render(out, "other", OTHER_SEED, SHORT_SECONDS),
        "faceless": _render(out, "faceless", MAIN_SEED, SHORT_SECONDS, synthetic_config(faces_per_frame=0)),
        "two": _render(out, "two", MAIN_SEED, SHORT_SECONDS, synthetic_config(faces_per_frame=2)),
        "silence": _render(out, "silence", OTHER_SEED, 9.0, synthetic_config(silence_s=2.5)),
    }


def test_mp4_decodes_with_size_frames_and_audio(corpus):
    summary, truth, mp4 = corpus["main"]
    frames = corpus["main_frames"]
    assert abs(len(frames) - truth["n_frames"]) <= 1
    assert truth["n_frames"] == summary["n_frames"] == round(MAIN_SECONDS * truth["fps"])
    assert frames[0].shape == (truth["height"], truth["width"], 3) == (360, 640, 3)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,pix_fmt,sample_rate,channels",
         "-of", "json", str(mp4)], check=True, capture_output=True, text=True).stdout)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["pix_fmt"] == "yuv420p"
    assert streams["audio"]["codec_name"] == "aac"
    assert int(streams["audio"]["sample_rate"]) == 16000 and streams["audio"]["channels"] == 1
    assert summary["bytes"] == mp4.stat().st_size
    assert summary["render_s"] < MAIN_SECONDS  # faster than real time even on a loaded machine
    assert not list(corpus["out"].glob(".*part")), "temporary files left behind"


def test_truth_is_consistent(corpus):
    _, t, _ = corpus["main"]
    n = t["n_frames"]
    assert len(t["mouth_open"]) == len(t["face_boxes"]) == n
    assert t["duration_s"] == pytest.approx(n / t["fps"])
    shots = t["shots"]
    assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == n
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(shots, shots[1:]))
    assert t["cuts"] == [s["start_frame"] for s in shots[1:]]
    assert {s["kind"] for s in shots} == {"face", "slide"}
    for s in shots:
        boxes = t["face_boxes"][s["start_frame"] : s["end_frame"]]
        assert all((b is None) == (s["kind"] == "slide") for b in boxes)
    sentences = t["sentences"]
    assert sentences and all(s["end_s"] > s["start_s"] for s in sentences)
    assert all(b["start_s"] - a["end_s"] >= MIN_PAUSE_S - 1e-6 for a, b in zip(sentences, sentences[1:]))
    assert sentences[-1]["end_s"] <= t["duration_s"]
    for w in t["words"]:
        assert any(s["start_s"] - 0.01 <= w["start_s"] <= w["end_s"] <= s["end_s"] + 0.01 for s in sentences), w
    times = [p["time_s"] for p in t["phonemes"]]
    assert times == sorted(times)
    assert 0 <= min(t["mouth_open"]) and max(t["mouth_open"]) <= 1
    assert t["identity"] == 0 and t["presenters"] == [0]
    json.dumps(t["look"])


def test_same_seed_same_truth(corpus):
    a = (corpus["out"] / "main.truth.json").read_text()
    b = (corpus["out"] / "again" / "main.truth.json").read_text()
    assert a == b


def test_haar_finds_the_face_and_nothing_on_slides(corpus):
    _, t, _ = corpus["main"]
    hits = face_frames = slide_false = 0
    for f in range(0, t["n_frames"], 2):
        faces = _detect(corpus["main_frames"][f])
        box = t["face_boxes"][f]
        if box is None:
            slide_false += len(faces) > 0
        else:
            face_frames += 1
            hits += any(_iou(box, d) > 0.4 for d in faces)
    assert face_frames > 0
    assert hits >= 0.95 * face_frames, f"{hits}/{face_frames}"
    assert slide_false == 0


def test_cuts_are_visible_to_a_content_detector(corpus):
    """Mean HSV change between neighbouring frames (PySceneDetect's ContentDetector score)."""
    _, t, _ = corpus["main"]
    hsv = [cv2.cvtColor(f, cv2.COLOR_BGR2HSV).astype(np.int16) for f in corpus["main_frames"]]
    score = np.array([np.abs(b - a).mean() for a, b in zip(hsv, hsv[1:])])  # score[i]: frame i -> i+1
    cut_scores = score[np.array(t["cuts"]) - 1]
    within = np.delete(score, np.array(t["cuts"]) - 1)
    assert cut_scores.min() > 3 * within.max(), (cut_scores, within.max())


def test_one_presenter_skin_across_episodes(corpus):
    def skin(key: str) -> np.ndarray:
        _, t, mp4 = corpus[key]
        frames = corpus["main_frames"] if key == "main" else _frames(mp4)
        samples = []
        for f in range(0, t["n_frames"], 5):
            box = t["face_boxes"][f]
            if box is None:
                continue
            x, y, w, h = box
            for side in (-1, 1):  # plain cheek skin, clear of eyes, nose, mouth and highlights
                cx, cy, r = x + w / 2 + side * 0.33 * w, y + h / 2 + 0.17 * h, max(2, int(0.03 * w))
                patch = frames[f][int(cy) - r : int(cy) + r, int(cx) - r : int(cx) + r]
                samples.append(np.median(patch.reshape(-1, 3), axis=0))
        return np.median(samples, axis=0)

    main, other = corpus["main"][1], corpus["other"][1]
    assert main["seed"] != other["seed"] and main["look"] != other["look"]
    assert main["identity"] == other["identity"] == 0
    assert np.abs(skin("main") - skin("other")).max() < 15, (skin("main"), skin("other"))


def test_mouth_follows_loudness(corpus):
    _, t, mp4 = corpus["main"]
    spf = t["sample_rate"] // t["fps"]
    audio = _audio(mp4, t["sample_rate"])
    n = min(t["n_frames"], len(audio) // spf)
    rms = np.sqrt((audio[: n * spf].reshape(n, spf).astype(np.float64) ** 2).mean(axis=1))
    centre = (np.arange(n) + 0.5) / t["fps"]
    speech = np.zeros(n, bool)  # inside a sentence and not a closure or pause (> -40 dBFS)
    for s in t["sentences"]:
        speech |= (centre >= s["start_s"]) & (centre < s["end_s"])
    speech &= 20 * np.log10(rms + 1e-12) > SPEECH_DBFS
    r = np.corrcoef(np.asarray(t["mouth_open"][:n])[speech], np.log(rms[speech] + 1e-6))[0, 1]
    assert r > 0.5, r


def test_faceless_episode(corpus):
    _, t, mp4 = corpus["faceless"]
    assert t["presenters"] == [] and all(b is None for b in t["face_boxes"])
    frames = _frames(mp4)
    assert abs(len(frames) - t["n_frames"]) <= 1
    assert sum(len(_detect(f)) > 0 for f in frames[::10]) == 0
    # the same seed keeps its speech and look whatever is drawn
    two = corpus["two"][1]
    assert (t["sentences"], t["look"]) == (two["sentences"], two["look"])


def test_two_presenters(corpus):
    _, t, mp4 = corpus["two"]
    assert len(t["presenters"]) == 2 and t["presenters"][0] != t["presenters"][1]
    frames = _frames(mp4)
    face = [f for f in range(0, len(frames), 5) if t["face_boxes"][f] is not None]
    two = sum(len(_detect(frames[f])) >= 2 for f in face)
    assert face and two >= 0.8 * len(face), f"{two}/{len(face)}"


def test_inserted_silence(corpus):
    _, t, mp4 = corpus["silence"]
    gap = t["silence"]
    assert gap["end_s"] - gap["start_s"] >= 2.5 - 1e-6
    assert all(s["end_s"] <= gap["start_s"] + 1e-6 or s["start_s"] >= gap["end_s"] - 1e-6 for s in t["sentences"])
    audio = _audio(mp4, t["sample_rate"])
    sr, margin = t["sample_rate"], 0.05
    quiet = audio[int((gap["start_s"] + margin) * sr) : int((gap["end_s"] - margin) * sr)]
    assert np.sqrt(np.mean(quiet.astype(np.float64) ** 2)) < 10 ** (-50 / 20)
    fps = t["fps"]
    mouth = t["mouth_open"][int(gap["start_s"] * fps) + 2 : int(gap["end_s"] * fps) - 2]
    assert max(mouth) < 0.05


def test_interrupted_render_leaves_no_files(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = episode_mod.pr.composite

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(episode_mod.pr, "composite", failing)
    with pytest.raises(KeyboardInterrupt):
        render_episode("broken", 0, 3.0, tmp_path, synthetic_config())
    assert list(tmp_path.iterdir()) == []


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        synthetic_config(faces_per_frame=3)
    with pytest.raises(ValueError):
        dataclasses.replace(synthetic_config(), fps=30, sample_rate=16000)  # 533.3 samples per frame
    with pytest.raises(ValueError):
        dataclasses.replace(synthetic_config(), identities=0)
    with pytest.raises(TypeError):  # the params-given settings have no default
        SyntheticConfig(faces_per_frame=1)
