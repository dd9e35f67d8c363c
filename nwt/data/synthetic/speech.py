"""espeak-ng speech with phoneme and word timings, through libespeak-ng and ctypes.

Why ctypes and not the `espeak-ng` command: the library's synchronous mode hands us the audio
together with phoneme and word events that carry their position in the audio (ms), which is what
drives the presenter's mouth and the word-level ground truth. Synthesis runs at ~200× real time.

The library keeps global state (one voice, one callback), so this module keeps one process-wide
engine, initialised lazily on first use (importing stays cheap and never fails) and guarded by a
lock. The ctypes callback object is stored on the engine so it is never garbage-collected while
the C library still holds its address.

Determinism: libespeak-ng 1.51 carries synthesis state from one utterance to the next (and uses
libc `rand()` for voicing noise), so the same text spoken twice in one process differs in samples
and even in length (±20 ms), and `espeak_Terminate` + `espeak_Initialize` hangs on the next
synthesis. Only a freshly initialised library is reproducible. So the parent process initialises
the library once and never synthesises; each utterance runs in a forked child (a few ms) that
starts from that pristine state, seeds `rand()`, and sends back the samples and events.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import threading
from dataclasses import dataclass, field
from math import gcd

import numpy as np
from scipy.signal import resample_poly

LIBRARY = "libespeak-ng.so.1"
INSTALL_HINT = "espeak-ng is missing: apt-get install espeak-ng (provides libespeak-ng.so.1)"

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
RAND_SEED = 1  # libc rand() seed for espeak's voicing noise, set in every synthesis child

INT16_SCALE = 32768.0
MS = 1000.0
# Speech extent: 10 ms energy frames above -40 dBFS (matched sentence boundaries to 10–17 ms
# median error in the prototype).
ENERGY_FRAME_S = 0.010
SPEECH_THRESHOLD_DBFS = -40.0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """`espeak_EVENT` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Speech:
    """One synthesised utterance.

    pcm: float32 mono in [-1, 1] at the requested sample rate.
    phonemes: (time_s, espeak phoneme mnemonic), in order.
    words: (start_s, end_s, word); a word ends where the next one starts, the last one where the
        speech ends (trailing silence trimmed by energy).
    onset_s / offset_s: the speech extent inside `pcm` by energy (-40 dBFS, 10 ms frames).
    """

    pcm: np.ndarray
    phonemes: list[tuple[float, str]]
    words: list[tuple[float, float, str]]
    sample_rate: int
    onset_s: float = 0.0
    offset_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass
class _Engine:
    lib: ctypes.CDLL
    native_rate: int
    chunks: list[np.ndarray] = field(default_factory=list)
    events: list[tuple[int, int, object]] = field(default_factory=list)  # (type, ms, payload)
    callback: object = None  # the live ctypes callback; must outlive every synthesis call

    def on_audio(self, wav, n: int, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self.events.append((_EVENT_PHONEME, e.audio_position, e.id.string.decode("ascii", "replace")))
            elif e.type == _EVENT_WORD:
                self.events.append((_EVENT_WORD, e.audio_position, (e.text_position, e.length)))
            i += 1
        return 0


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    """Load and initialise libespeak-ng once per process (callers hold `_lock`)."""
    global _engine
    if _engine is not None:
        return _engine
    try:
        lib = ctypes.cdll.LoadLibrary(LIBRARY)
    except OSError as err:
        raise RuntimeError(INSTALL_HINT) from err
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate}); is espeak-ng-data installed? {INSTALL_HINT}")
    engine = _Engine(lib=lib, native_rate=rate)
    engine.callback = _SynthCallback(engine.on_audio)
    lib.espeak_SetSynthCallback(engine.callback)
    _engine = engine
    return engine


def _speak_here(eng: _Engine, text: str, voice: str, rate: int, pitch: int) -> tuple[list, list]:
    """Synthesise in this process (only ever called in a forked child: see the module docstring)."""
    eng.chunks.clear()
    eng.events.clear()
    ctypes.CDLL(None).srand(RAND_SEED)
    if eng.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
        raise ValueError(f"espeak-ng has no voice {voice!r}")
    eng.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
    eng.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
    data = text.encode("utf-8")
    eng.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    eng.lib.espeak_Synchronize()
    return list(eng.chunks), list(eng.events)


def _synth_in_child(eng: _Engine, text: str, voice: str, rate: int, pitch: int) -> tuple[list, list]:
    """Run `_speak_here` in a forked child so every utterance starts from the pristine library."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(read_fd)
            try:
                result = ("ok", _speak_here(eng, text, voice, rate, pitch))
            except Exception as err:  # reported to the parent
                result = ("error", repr(err))
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        payload = inp.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        raise RuntimeError(f"espeak-ng synthesis child failed (wait status {status}) for {text!r}")
    kind, value = pickle.loads(payload)
    if kind == "error":
        raise ValueError(value)
    return value


def speech_extent(pcm: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(onset_s, offset_s) of the part of `pcm` louder than -40 dBFS; (0, 0) if all silent."""
    hop = max(1, int(round(ENERGY_FRAME_S * sample_rate)))
    n = len(pcm) // hop
    if n == 0:
        return 0.0, 0.0
    rms = np.sqrt(np.mean(pcm[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(20 * np.log10(rms + 1e-12) > SPEECH_THRESHOLD_DBFS)
    if len(loud) == 0:
        return 0.0, 0.0
    return float(loud[0] * hop / sample_rate), float(min(len(pcm), (loud[-1] + 1) * hop) / sample_rate)


def synth(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, *, sample_rate: int) -> Speech:
    """Speak `text` with an espeak-ng voice (e.g. "en-us", "en-us+f3"); rate in words/min, pitch 0–100."""
    with _lock:
        eng = _get_engine()
        chunks, events = _synth_in_child(eng, text, voice, rate, pitch)
        native = eng.native_rate

    pcm = np.concatenate(chunks).astype(np.float32) / INT16_SCALE if chunks else np.zeros(0, np.float32)
    if sample_rate != native and len(pcm):
        g = gcd(sample_rate, native)
        pcm = resample_poly(pcm, sample_rate // g, native // g).astype(np.float32)
    onset, offset = speech_extent(pcm, sample_rate)

    phonemes = [(ms / MS, sym) for kind, ms, sym in events if kind == _EVENT_PHONEME]
    starts = [  # text_position is 1-based and counts characters; the templates are ASCII
        (ms / MS, text[pos - 1 : pos - 1 + length]) for kind, ms, (pos, length) in
        ((k, m, p) for k, m, p in events if k == _EVENT_WORD)
    ]
    ends = [t for t, _ in starts[1:]] + [offset]
    words = [(t, max(t, end), w) for (t, w), end in zip(starts, ends)]
    return Speech(pcm=pcm, phonemes=phonemes, words=words, sample_rate=sample_rate, onset_s=onset, offset_s=offset)
