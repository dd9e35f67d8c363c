import numpy as np

from nwt.data.asr.vad import webrtcvad_spans
from nwt.data.segment import PAD_S, Token, cut_clips


def _speech_like(rng, seconds, rate=16000):
    """Voiced-sounding noise: a 150 Hz pulse train through a crude formant filter."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = np.sign(np.sin(2 * np.pi * 150 * t)) * 0.3 + rng.normal(0, 0.05, len(t))
    return np.convolve(buzz, np.hanning(16) / 8, "same").astype(np.float32)


def test_vad_finds_speech_between_silences(rng):
    rate = 16000
    audio = np.concatenate([np.zeros(rate), _speech_like(rng, 2.0), np.zeros(rate), _speech_like(rng, 1.5),
                            np.zeros(rate)])
    spans = webrtcvad_spans(audio, rate, aggressiveness=2, min_pause_s=0.3)
    assert len(spans) == 2
    (s0, e0), (s1, e1) = spans
    # webrtcvad holds on ≈100 ms after speech stops
    assert abs(s0 - 1.0) < 0.1 and abs(e0 - 3.0) < 0.15
    assert abs(s1 - 4.0) < 0.1 and abs(e1 - 5.5) < 0.15


def test_silence_gives_no_spans():
    assert webrtcvad_spans(np.zeros(32000, np.float32), 16000, 2, 0.3) == []


def _span_clips(spans, shot, shot_start_s, shot_end_s, min_clip_s, max_clip_s):
    """VAD spans → clips, aiming at the longest clip, with no gap forcing a cut."""
    return cut_clips([Token(s, e) for s, e in spans], shot, shot_start_s, shot_end_s, min_clip_s, max_clip_s,
                     target_clip_s=max_clip_s, min_pause_s=0.3, max_gap_s=float("inf"))


def test_grouping_respects_max_length_and_shot():
    spans = [(1.0, 3.0), (3.5, 5.0), (5.6, 8.0), (10.5, 10.8)]
    clips = _span_clips(spans, shot=0, shot_start_s=0.0, shot_end_s=12.0, min_clip_s=1.0, max_clip_s=5.0)
    assert [(c.speech_start_s, c.speech_end_s) for c in clips] == [(1.0, 5.0), (5.6, 8.0), (10.5, 10.8)]
    assert all(c.end_s - c.start_s <= 5.0 + 1e-9 for c in clips)
    assert clips[0].start_s == 1.0 - PAD_S
    assert [c.status for c in clips] == ["kept", "kept", "rejected"]
    assert clips[-1].reason == "too_short"


def test_spans_are_clipped_to_their_shot():
    clips = _span_clips([(0.5, 4.0)], shot=3, shot_start_s=2.0, shot_end_s=3.5, min_clip_s=0.5, max_clip_s=8.0)
    assert len(clips) == 1 and clips[0].start_s == 2.0 and clips[0].end_s == 3.5


def test_one_long_span_is_cut_into_pieces():
    clips = _span_clips([(0.0, 20.0)], 0, 0.0, 30.0, 1.0, 8.0)
    assert len(clips) == 3
    assert all(c.end_s - c.start_s <= 8.0 for c in clips)


# --- cutting on word lists (the word-level backends) -------------------------------------------

def _words(rng, seconds, pause_every=8, start=0.2):
    """A word stream: 0.15–0.5 s words, mostly abutting, a 0.3–0.8 s pause every ≈pause_every words."""
    out, t = [], start
    while t < seconds - 0.6:
        d = float(rng.uniform(0.15, 0.5))
        out.append(Token(t, t + d, f"w{len(out)}"))
        t += d + (float(rng.uniform(0.3, 0.8)) if rng.random() < 1 / pause_every else float(rng.uniform(0, 0.04)))
    return out


def _assert_no_word_split(clips, words):
    kept = [c for c in clips if c.status == "kept"]
    for w in words:
        for c in kept:
            inside = c.start_s < w.end_s and w.start_s < c.end_s
            assert not inside or (c.start_s <= w.start_s and w.end_s <= c.end_s), (w, c)


def test_word_cuts_never_split_a_word_and_respect_min_max(rng):
    words = _words(rng, 60.0)
    clips = cut_clips(words, 0, 0.0, 60.0, min_clip_s=2.0, max_clip_s=8.0, target_clip_s=6.0, min_pause_s=0.3,
                      max_gap_s=1.5)
    kept = [c for c in clips if c.status == "kept"]
    assert len(kept) >= 7
    _assert_no_word_split(clips, words)
    assert all(2.0 - 1e-9 <= c.end_s - c.start_s <= 8.0 + 1e-9 for c in kept)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(clips, clips[1:]))  # no overlap
    # the target pulls lengths together: most clips within 2 s of it
    lengths = np.array([c.end_s - c.start_s for c in kept])
    assert np.mean(np.abs(lengths - 6.0) < 2.0) >= 0.7
    # clips end at pauses where they can
    assert sum(c.end_cut == "pause" for c in kept) >= len(kept) // 2


def test_words_crossing_a_shot_edge_are_dropped_not_cut():
    words = [Token(0.5, 1.0, "a"), Token(1.0, 1.6, "b"), Token(1.6, 2.4, "c"), Token(2.4, 3.0, "d")]
    clips = cut_clips(words, 1, 1.2, 5.0, 0.5, 8.0, 6.0, 0.3, 1.5)
    assert len(clips) == 1
    assert clips[0].speech_start_s == 1.6 and clips[0].start_s >= 1.2  # "b" began before the shot
    assert clips[0].start_cut == "pause"


def test_a_long_silence_always_ends_a_clip():
    words = [Token(0.2, 2.0, "a"), Token(2.0, 3.5, "b"), Token(5.5, 7.0, "c"), Token(7.0, 8.0, "d")]
    clips = cut_clips(words, 0, 0.0, 10.0, 1.0, 9.0, 9.0, 0.3, max_gap_s=1.5)
    assert [(c.speech_start_s, c.speech_end_s) for c in clips] == [(0.2, 3.5), (5.5, 8.0)]
    assert clips[0].end_cut == "gap" and clips[1].start_cut == "gap"


def test_unbroken_speech_is_cut_between_words_when_it_must():
    words = [Token(0.1 + 0.4 * k, 0.5 + 0.4 * k, f"w{k}") for k in range(40)]  # 16 s, no pause at all
    clips = cut_clips(words, 0, 0.0, 17.0, 2.0, 6.0, 5.0, 0.3, 1.5)
    assert len(clips) >= 3 and all(c.end_s - c.start_s <= 6.0 + 1e-9 for c in clips)
    _assert_no_word_split(clips, words)
    assert {c.end_cut for c in clips[:-1]} == {"word"}


def test_lwt_profile_lengths_give_the_paper_mean():
    """profiles/lwt.yaml: target 7.5, max 11, min 3 on long face spans → mean ≈ 7.46 s (the paper's)."""
    import yaml
    from conftest import REPO

    seg = yaml.safe_load((REPO / "profiles" / "lwt.yaml").read_text())["segment"]
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(120):
        span = float(rng.uniform(15, 60))
        words = _words(rng, span)
        clips = cut_clips(words, 0, 0.0, span, seg["min_clip_s"], seg["max_clip_s"], seg["target_clip_s"],
                          seg["min_pause_s"], seg["max_gap_s"])
        lengths += [c.end_s - c.start_s for c in clips if c.status == "kept"]
    assert abs(np.mean(lengths) - 7.46) < 0.3, np.mean(lengths)


def test_auto_picks_a_method_per_episode():
    from conftest import repo_section

    from nwt.data.segment import episode_method
    from nwt.params import SegmentParams, with_changes

    cfg = repo_section("segment", SegmentParams)
    truth = {"sentences": [{"text": "Hello there.", "start_s": 0.2, "end_s": 1.0}]}
    auto = with_changes(cfg, backend="auto", no_transcript="recognize")
    assert episode_method(auto, truth) == "align"
    assert episode_method(auto, None) == episode_method(auto, {"sentences": []}) == "recognize"
    assert episode_method(with_changes(auto, no_transcript="vad"), None) == "vad"
    assert episode_method(with_changes(cfg, backend="pocketsphinx", no_transcript="recognize"), None) == "vad"
    assert episode_method(with_changes(cfg, backend="silero"), truth) == "vad"
    assert episode_method(with_changes(cfg, backend="whisperx"), None) == "whisperx"
