"""The segment task on a rendered synthetic episode, per offline backend, scored against its truth."""
import json

import numpy as np
import pytest
from conftest import repo_section, synthetic_config

from nwt.data.segment import episode_clips
from nwt.data.synthetic.episode import render_episode
from nwt.params import SegmentParams, with_changes

pytest.importorskip("silero_vad")
pytest.importorskip("pocketsphinx")

RENDER = synthetic_config()
FPS, RATE = RENDER.fps, RENDER.sample_rate
CFG = with_changes(repo_section("segment", SegmentParams), vad="silero", vad_aggressiveness=2, vad_threshold=0.5,
                   min_clip_s=2.0, max_clip_s=8.0, target_clip_s=6.0, min_pause_s=0.3, max_gap_s=1.5)
BOUNDARY_MEDIAN_LIMIT_S = 0.060  # the target on the synthetic corpus


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    out = tmp_path_factory.mktemp("segment_episode")
    render_episode("e0", 1, 30.0, out, RENDER)
    truth = json.loads((out / "e0.truth.json").read_text())
    shots = [(k, s["start_frame"], s["end_frame"]) for k, s in enumerate(truth["shots"]) if s["kind"] == "face"]
    return dict(path=str(out / "e0.mp4"), truth=str(out / "e0.truth.json"), shots=shots), truth


@pytest.mark.parametrize("backend", ["silero", "pocketsphinx"])
def test_backend_meets_the_boundary_target(episode, backend):
    job, truth = episode
    res = episode_clips(job, with_changes(CFG, backend=backend), FPS, RATE)
    kept = [c for c in res["clips"] if c.status == "kept"]
    assert kept and res["boundary_errors_s"]
    assert np.median(res["boundary_errors_s"]) <= BOUNDARY_MEDIAN_LIMIT_S, (backend, res["boundary_errors_s"])
    assert all(CFG.min_clip_s - 1e-9 <= c.end_s - c.start_s <= CFG.max_clip_s + 1e-9 for c in kept)
    assert res["audio_s"] == pytest.approx(30.0, abs=0.1) and res["compute_s"] > 0
    shot_range = {k: (s / FPS, e / FPS) for k, s, e in job["shots"]}
    for c in kept:
        lo, hi = shot_range[c.shot]
        assert lo - 1e-9 <= c.start_s and c.end_s <= hi + 1e-9
    if backend == "pocketsphinx":
        assert res["unaligned_groups"] == 0
        for c, words in zip(res["clips"], res["words"]):
            assert words and all(c.start_s <= w["start_s"] and w["end_s"] <= c.end_s for w in words)
        # every aligned word is within 0.1 s of a true word of the same text
        true = {(w["word"].lower().strip(".,"), round(w["start_s"], 1)) for w in truth["words"]}
        aligned = [w for ws in res["words"] for w in ws]
        near = [any((w["word"], round(w["start_s"] + d, 1)) in true for d in (-0.1, 0.0, 0.1)) for w in aligned]
        assert np.mean(near) > 0.9


def test_pocketsphinx_without_a_transcript_cuts_on_vad_spans_and_says_so(episode):
    job, _ = episode
    res = episode_clips(dict(job, truth=None), with_changes(CFG, backend="pocketsphinx"), FPS, RATE)
    assert res["vad_only"] and res["clips"] and res["boundary_errors_s"] == []
    assert not episode_clips(job, with_changes(CFG, backend="silero"), FPS, RATE)["vad_only"]


# --- segment.backend auto: align with a transcript, recognize (or VAD) without ---------------------

def test_auto_with_a_transcript_is_forced_alignment(episode):
    job, _ = episode
    auto = episode_clips(job, with_changes(CFG, backend="auto", no_transcript="recognize"), FPS, RATE)
    aligned = episode_clips(job, with_changes(CFG, backend="pocketsphinx"), FPS, RATE)
    assert auto["method"] == aligned["method"] == "align" and not auto["vad_only"]
    assert [(c.start_s, c.end_s, c.status) for c in auto["clips"]] == [(c.start_s, c.end_s, c.status)
                                                                       for c in aligned["clips"]]
    assert auto["words"] == aligned["words"] and auto["boundary_errors_s"] == aligned["boundary_errors_s"]


def test_auto_without_a_transcript_recognizes_word_edges(episode):
    job, truth = episode
    res = episode_clips(dict(job, truth=None), with_changes(CFG, backend="auto", no_transcript="recognize"), FPS, RATE)
    assert res["method"] == "recognize" and not res["vad_only"]
    kept = [c for c in res["clips"] if c.status == "kept"]
    assert kept and all(CFG.min_clip_s - 1e-9 <= c.end_s - c.start_s <= CFG.max_clip_s + 1e-9 for c in kept)
    assert all(words == [] for words in res["words"])  # recognised text is no transcript: never exported
    # the clip speech edges are near true word edges (scored here, not given to the cutter)
    starts = np.array([w["start_s"] for w in truth["words"]])
    ends = np.array([w["end_s"] for w in truth["words"]])
    err = [np.min(np.abs(starts - c.speech_start_s)) for c in kept] + [np.min(np.abs(ends - c.speech_end_s))
                                                                       for c in kept]
    assert np.median(err) < 0.08, err


def test_auto_without_a_transcript_on_vad_says_so(episode):
    job, _ = episode
    res = episode_clips(dict(job, truth=None), with_changes(CFG, backend="auto", no_transcript="vad"), FPS, RATE)
    assert res["method"] == "vad" and res["vad_only"] and res["clips"]
    assert episode_clips(job, with_changes(CFG, backend="silero"), FPS, RATE)["method"] == "vad"


def test_recognised_words_stay_inside_their_vad_spans(episode):
    from nwt.data.asr.recognize import recognise_words
    from nwt.data.media import read_audio
    from nwt.data.segment import detect_spans

    job, _ = episode
    audio = read_audio(job["path"], RATE)
    spans = detect_spans(audio, RATE, CFG, "silero")[:3]  # three sentences are enough, and quick
    tokens = recognise_words(audio, RATE, spans)
    assert sum(t.word is not None for t in tokens) > 2 * len(spans)  # several words per spoken sentence
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(tokens, tokens[1:]))  # in order, no overlap
    for s, e in spans:  # each span is covered edge to edge by its words
        inside = [t for t in tokens if s - 1e-9 <= t.start_s and t.end_s <= e + 1e-9]
        assert inside and inside[0].start_s == s and inside[-1].end_s == e
