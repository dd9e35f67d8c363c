import numpy as np

from nwt.data.segment import PAD_S, group_clips, speech_spans


def _speech_like(rng, seconds, rate=16000):
    """Voiced-sounding noise: a 150 Hz pulse train through a crude formant filter."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = np.sign(np.sin(2 * np.pi * 150 * t)) * 0.3 + rng.normal(0, 0.05, len(t))
    return np.convolve(buzz, np.hanning(16) / 8, "same").astype(np.float32)


def test_vad_finds_speech_between_silences(rng):
    rate = 16000
    audio = np.concatenate([np.zeros(rate), _speech_like(rng, 2.0), np.zeros(rate), _speech_like(rng, 1.5),
                            np.zeros(rate)])
    spans = speech_spans(audio, rate, aggressiveness=2, min_pause_s=0.3)
    assert len(spans) == 2
    (s0, e0), (s1, e1) = spans
    # webrtcvad holds on ≈100 ms after speech stops
    assert abs(s0 - 1.0) < 0.1 and abs(e0 - 3.0) < 0.15
    assert abs(s1 - 4.0) < 0.1 and abs(e1 - 5.5) < 0.15


def test_silence_gives_no_spans():
    assert speech_spans(np.zeros(32000, np.float32), 16000, 2, 0.3) == []


def test_grouping_respects_max_length_and_shot():
    spans = [(1.0, 3.0), (3.5, 5.0), (5.6, 8.0), (10.5, 10.8)]
    clips = group_clips(spans, shot=0, shot_start_s=0.0, shot_end_s=12.0, min_clip_s=1.0, max_clip_s=5.0)
    assert [(c.speech_start_s, c.speech_end_s) for c in clips] == [(1.0, 5.0), (5.6, 8.0), (10.5, 10.8)]
    assert all(c.end_s - c.start_s <= 5.0 + 1e-9 for c in clips)
    assert clips[0].start_s == 1.0 - PAD_S
    assert [c.status for c in clips] == ["kept", "kept", "rejected"]
    assert clips[-1].reason == "too_short"


def test_spans_are_clipped_to_their_shot():
    clips = group_clips([(0.5, 4.0)], shot=3, shot_start_s=2.0, shot_end_s=3.5, min_clip_s=0.5, max_clip_s=8.0)
    assert len(clips) == 1 and clips[0].start_s == 2.0 and clips[0].end_s == 3.5


def test_one_long_span_is_cut_into_pieces():
    clips = group_clips([(0.0, 20.0)], 0, 0.0, 30.0, 1.0, 8.0)
    assert len(clips) == 3
    assert all(c.end_s - c.start_s <= 8.0 for c in clips)
