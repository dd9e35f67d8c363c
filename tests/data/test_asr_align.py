"""pocketsphinx forced alignment (en-us model from the wheel) of espeak sentences with known word times."""
import numpy as np
import pytest

from nwt.data.synthetic.speech import synth
from nwt.data.synthetic.text import sentence

pytest.importorskip("pocketsphinx")

from nwt.data.asr.align import AlignError, align_transcript, align_words, match_sentences, normalise  # noqa: E402

RATE = 16000
# Measured on 24 random template sentences (espeak en-us, 160 wpm): word-start error median 10 ms,
# p90 37 ms, max 0.20 s (a "the" after a comma pause: the truth gives the pause to the word before).
START_MEDIAN_TOL_S = 0.025
START_P90_TOL_S = 0.08


def test_words_align_within_the_measured_tolerance():
    rng = np.random.default_rng(3)
    errors = []
    for _ in range(6):
        text = sentence(rng)
        sp = synth(text, sample_rate=RATE)
        a, b = int(sp.onset_s * RATE), int(sp.offset_s * RATE)
        tokens = align_words(sp.pcm[a:b], normalise(text), offset_s=a / RATE)
        assert [t.word for t in tokens] == normalise(text)
        assert all(t.start_s < t.end_s for t in tokens)
        errors += [abs(t.start_s - w[0]) for t, w in zip(tokens, sp.words)]
    assert np.median(errors) < START_MEDIAN_TOL_S, np.median(errors)
    assert np.percentile(errors, 90) < START_P90_TOL_S


def test_transcript_is_matched_to_spans_then_aligned():
    texts = ["The quiet river opened the new garden today.", "Here is more about the museum and the local bridge."]
    parts, truth_words, t = [np.zeros(RATE // 2, np.float32)], [], 0.5
    for text in texts:
        sp = synth(text, sample_rate=RATE)
        a, b = int(sp.onset_s * RATE), int(sp.offset_s * RATE)
        truth_words += [(s - sp.onset_s + t, w) for s, _, w in sp.words]
        parts += [sp.pcm[a:b], np.zeros(RATE // 2, np.float32)]
        t += (b - a) / RATE + 0.5
    audio = np.concatenate(parts)
    spans = [(truth_words[0][0], truth_words[8][0] - 0.45), (truth_words[8][0], t - 0.5)]  # as a VAD would give
    tokens, failed = align_transcript(audio, RATE, texts, spans)
    assert failed == 0 and [x.word for x in tokens] == [w for text in texts for w in normalise(text)]
    assert np.median([abs(x.start_s - s) for x, (s, _) in zip(tokens, truth_words)]) < START_MEDIAN_TOL_S


def test_sentence_span_matching_handles_split_and_missed_sentences():
    words = [["a"] * 10, ["b"] * 20, ["c"] * 10]  # expected lengths 1 : 2 : 1
    # the long sentence came out as two VAD spans
    spans = [(0.0, 1.0), (1.5, 2.4), (2.6, 3.6), (4.0, 5.0)]
    assert match_sentences(words, spans) == [([0], [0]), ([1], [1, 2]), ([2], [3])]


def test_out_of_dictionary_words_are_a_clear_error():
    with pytest.raises(AlignError, match="not in the pocketsphinx"):
        align_words(np.zeros(RATE, np.float32), ["hello", "zzxqvword"])
