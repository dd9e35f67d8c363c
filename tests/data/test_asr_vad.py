"""silero-vad (model from the wheel, no torchaudio) on espeak speech with known extents."""
import numpy as np
import pytest

from nwt.data.synthetic.speech import synth

pytest.importorskip("silero_vad")

from nwt.data.asr.vad import silero_spans, webrtcvad_spans  # noqa: E402

RATE = 16000


@pytest.fixture(scope="module")
def two_sentences():
    """1 s silence, sentence, 1 s silence, sentence, 1 s silence → (audio, true extents)."""
    parts, truth, t = [np.zeros(RATE, np.float32)], [], 1.0
    for text in ("The quiet river opened the new garden today.", "Here is more about the museum and the local bridge."):
        sp = synth(text, sample_rate=RATE)
        seg = sp.pcm[int(sp.onset_s * RATE):int(sp.offset_s * RATE)]
        truth.append((t, t + len(seg) / RATE))
        parts += [seg, np.zeros(RATE, np.float32)]
        t += len(seg) / RATE + 1.0
    return np.concatenate(parts), truth


def test_silero_finds_each_sentence_close_to_its_true_extent(two_sentences):
    audio, truth = two_sentences
    spans = silero_spans(audio, RATE, threshold=0.5, min_pause_s=0.3)
    assert len(spans) == 2
    for (s, e), (ts, te) in zip(spans, truth):
        # measured: onsets within ≈15 ms, offsets ≈60–75 ms late (the model's hangover)
        assert abs(s - ts) < 0.06, (s, ts)
        assert -0.03 < e - te < 0.15, (e, te)


def test_silero_at_another_rate_and_in_silence(two_sentences):
    from scipy.signal import resample_poly

    audio, truth = two_sentences
    spans = silero_spans(resample_poly(audio, 3, 1).astype(np.float32), 48000, 0.5, 0.3)
    assert len(spans) == 2 and abs(spans[0][0] - truth[0][0]) < 0.06
    assert silero_spans(np.zeros(2 * RATE, np.float32), RATE, 0.5, 0.3) == []


def test_importing_silero_keeps_the_torch_thread_count(two_sentences):
    import torch

    before = torch.get_num_threads()
    silero_spans(two_sentences[0][:RATE], RATE, 0.5, 0.3)
    assert torch.get_num_threads() == before


def test_webrtcvad_agrees_on_the_sentence_count(two_sentences):
    audio, truth = two_sentences
    spans = webrtcvad_spans(audio, RATE, 2, 0.3)
    assert len(spans) == 2 and abs(spans[1][0] - truth[1][0]) < 0.06
