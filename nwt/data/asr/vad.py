"""Voice activity detection → speech spans [(start_s, end_s)] in seconds.

Two offline backends, both at 16 kHz:
- webrtcvad: 30 ms frames, no model; holds on ≈100 ms after speech stops.
- silero: silero-vad's TorchScript model shipped inside the `silero_vad` wheel
  (`silero_vad/data/silero_vad.jit`, loaded by `load_silero_vad(onnx=False)`; no torchaudio and no
  network needed: we hand it our own decoded audio). 32 ms windows.

Both merge pauses shorter than `min_pause_s` and drop bursts shorter than `MIN_SPEECH_S`.
"""
from __future__ import annotations

import threading

import numpy as np

VAD_RATE = 16000  # both VADs run at 16 kHz
WEBRTC_FRAME_S = 0.03
MIN_SPEECH_S = 0.15  # shorter bursts are clicks or breaths, not words
SILERO_PAD_MS = 0  # silero pads spans by 30 ms by default; clip padding is added later, by the cutter
SILERO_WINDOW = 512  # samples per silero window at 16 kHz (fixed by the model)

_silero_model = None
_silero_lock = threading.Lock()


def to_vad_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == VAD_RATE:
        return np.asarray(audio, np.float32)
    from scipy.signal import resample_poly

    g = np.gcd(sample_rate, VAD_RATE)
    return resample_poly(audio, VAD_RATE // g, sample_rate // g).astype(np.float32)


def webrtcvad_spans(audio: np.ndarray, sample_rate: int, aggressiveness: int,
                    min_pause_s: float) -> list[tuple[float, float]]:
    """(S,) float audio → [(start_s, end_s)] of speech, by webrtcvad."""
    import webrtcvad

    pcm = (np.clip(to_vad_rate(audio, sample_rate), -1, 1) * 32767).astype(np.int16)
    hop = int(VAD_RATE * WEBRTC_FRAME_S)
    vad = webrtcvad.Vad(int(aggressiveness))
    flags = np.array([vad.is_speech(pcm[i:i + hop].tobytes(), VAD_RATE) for i in range(0, len(pcm) - hop + 1, hop)],
                     dtype=bool)
    spans = [(s * WEBRTC_FRAME_S, e * WEBRTC_FRAME_S) for s, e in _runs(flags)]
    return merge_spans(spans, min_pause_s)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def merge_spans(spans: list[tuple[float, float]], min_pause_s: float) -> list[tuple[float, float]]:
    """Bridge pauses shorter than min_pause_s, then drop spans shorter than MIN_SPEECH_S."""
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < min_pause_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(float(s), float(e)) for s, e in merged if e - s >= MIN_SPEECH_S - 1e-9]


def load_silero():
    """silero-vad's bundled TorchScript model, loaded once per process.

    `silero_vad.model` calls `torch.set_num_threads(1)` when imported; the caller's thread count is
    restored so importing the VAD does not slow down anything else in the process.
    """
    global _silero_model
    with _silero_lock:
        if _silero_model is None:
            import torch

            threads = torch.get_num_threads()
            try:
                from silero_vad import load_silero_vad
            except ImportError as err:
                raise RuntimeError("segment.backend silero needs the silero-vad package "
                                   "(pip install silero-vad==6.2.3; its model ships inside the wheel)") from err
            finally:
                torch.set_num_threads(threads)
            import warnings

            with warnings.catch_warnings():  # importlib-resources / torch.jit deprecation notices
                warnings.simplefilter("ignore", DeprecationWarning)
                _silero_model = load_silero_vad(onnx=False)
        return _silero_model


def silero_probs(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Speech probability per 32 ms window → (W,) float."""
    import torch

    model = load_silero()
    x = torch.from_numpy(to_vad_rate(audio, sample_rate))
    n = (len(x) + SILERO_WINDOW - 1) // SILERO_WINDOW
    x = torch.nn.functional.pad(x, (0, n * SILERO_WINDOW - len(x)))
    model.reset_states()
    with torch.inference_mode():
        probs = [model(x[i * SILERO_WINDOW:(i + 1) * SILERO_WINDOW], VAD_RATE).item() for i in range(n)]
    return np.asarray(probs, np.float32)


def silero_spans(audio: np.ndarray, sample_rate: int, threshold: float,
                 min_pause_s: float) -> list[tuple[float, float]]:
    """(S,) float audio → [(start_s, end_s)] of speech, by silero-vad (hysteresis as in the package)."""
    from silero_vad import get_speech_timestamps_from_probs

    audio16 = to_vad_rate(audio, sample_rate)
    probs = silero_probs(audio16, VAD_RATE)
    stamps = get_speech_timestamps_from_probs(
        probs.tolist(), sampling_rate=VAD_RATE, threshold=float(threshold),
        min_speech_duration_ms=int(MIN_SPEECH_S * 1000), min_silence_duration_ms=int(min_pause_s * 1000),
        speech_pad_ms=SILERO_PAD_MS, return_seconds=False, audio_length_samples=len(audio16))
    spans = [(d["start"] / VAD_RATE, d["end"] / VAD_RATE) for d in stamps]
    return merge_spans(spans, min_pause_s)
