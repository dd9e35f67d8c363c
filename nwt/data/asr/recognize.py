"""Word times without a transcript: pocketsphinx recognition (en-us model + LM inside the wheel).

Used by `segment.backend: auto` on an episode with no known transcript when `segment.no_transcript:
recognize` (not the default: on the rendered corpus its clip boundaries had a larger median error
than VAD spans alone, 36 vs 27 ms, though fewer clip edges inside a word, 38 % vs 56 %, at ≈45× the
compute; nwt.data.segment_eval, docs/experiments.md). Each VAD span is decoded on its own with the
wheel's en-us acoustic model, its 3-gram word LM and the CMU dictionary; fillers (<s>, </s>, <sil>,
[NOISE]) are dropped and the recognised words become tokens the clip cutter never splits.

Only the word *edges* are used: pocketsphinx's en-us LM misrecognises many words (on the rendered
corpus, "Here is more about the weather" comes back as "you read more about whether ..."), but its
word boundaries land within ≈30 ms of the true ones (median, synth-000), which is what the cutter
needs to cut a long span between words instead of into equal pieces. The recognised text is not
exported as clip words (see nwt.data.segment).

The second passes (`fwdflat`, `bestpath`) are switched off: they halve the decoding time and did
not move the word edges (median start error 31 ms without, 38 ms with, synth-000).
"""
from __future__ import annotations

import re
import threading

import numpy as np

from nwt.data.asr.align import FRAME_S, Token, pocketsphinx_decoder
from nwt.data.asr.vad import VAD_RATE, to_vad_rate

_decoder_lock = threading.Lock()


def _get_decoder():
    return pocketsphinx_decoder("recognize", "segment.no_transcript recognize", lm="en-us/en-us.lm.bin",
                                fwdflat=False, bestpath=False)


def _is_word(text: str) -> bool:
    return not (text.startswith("<") or text.startswith("[") or text.startswith("+"))


def recognise_span(audio16: np.ndarray, offset_s: float) -> list[Token]:
    """(S,) 16 kHz float audio of one speech span → its recognised words, times + offset_s."""
    pcm = (np.clip(audio16, -1, 1) * 32767).astype(np.int16)
    with _decoder_lock:
        dec = _get_decoder()
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        segs = [(s.word, s.start_frame, s.end_frame) for s in dec.seg()]
    return [Token(offset_s + a * FRAME_S, offset_s + (b + 1) * FRAME_S, re.sub(r"\(\d+\)$", "", w))
            for w, a, b in segs if _is_word(w)]


def recognise_words(audio: np.ndarray, sample_rate: int, spans: list[tuple[float, float]]) -> list[Token]:
    """Audio + VAD spans → word tokens in time order; a span with no recognised word stays one VAD token.

    The first and last word of a span are stretched or clipped to the span's edges: the VAD decides
    where speech starts and stops, recognition only where it may be cut inside.
    """
    audio16 = to_vad_rate(audio, sample_rate)
    tokens: list[Token] = []
    for start, end in spans:
        words = recognise_span(audio16[int(start * VAD_RATE):int(end * VAD_RATE)], start)
        words = [w for w in words if w.end_s > start and w.start_s < end]
        if not words:
            tokens.append(Token(start, end))
            continue
        words[0].start_s, words[-1].end_s = start, end
        tokens += [w for w in words if w.end_s > w.start_s]
    return tokens
