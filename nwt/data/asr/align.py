"""Forced word alignment of a known transcript with pocketsphinx (en-us model inside the wheel).

How an episode is aligned:
1. A VAD gives speech spans; the transcript is a list of sentences in order.
2. Sentences are matched to runs of spans by a monotone dynamic programme over expected length
   (letters × the episode's speaking rate), after Gale & Church's sentence alignment: moves 1–1,
   1–2, 2–1, 1–3, 3–1 sentences–spans, a span with no sentence (noise) and a sentence with no span
   (missed by the VAD) at a penalty.
3. Each matched group is aligned on its own audio with `Decoder.set_align_text` (pocketsphinx
   word-level alignment). Filler (silence) insertion is switched off (`fsgusefiller=False`): with
   it, pocketsphinx 5.1.1 often fails to reach the grammar's final state on espeak speech
   ("Final result does not match the grammar"), while without it 24/24 test sentences aligned.
   So a pause inside a group is absorbed by the word before it — the same convention as the
   synthetic truth, where a word ends where the next one starts.

A group that still fails to align keeps its VAD spans as unsplittable units (reported, counted in
`unaligned_groups`), so the clip cutter never guesses word boundaries it does not know.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from nwt.data.asr.vad import VAD_RATE, to_vad_rate

FRAME_S = 0.01  # pocketsphinx frames are 10 ms
GROUP_PAD_S = 0.03  # audio kept either side of a span group when aligning it
LENGTH_SIGMA = 0.35  # spread of log(actual / expected length) in the sentence ↔ span programme
SKIP_PENALTY = 6.0  # cost of a span without a sentence or a sentence without a span
MERGE_PENALTY = 1.0  # extra cost of a 1–2 / 2–1 move (×2 for 1–3 / 3–1)
MOVES = ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (0, 1), (1, 0))  # (sentences, spans)


class AlignError(RuntimeError):
    pass


@dataclass
class Token:
    """A unit the clip cutter never splits: an aligned word, or a VAD span whose words are unknown."""

    start_s: float
    end_s: float
    word: str | None = None  # None: a VAD span


def normalise(text: str) -> list[str]:
    """Transcript text → lower-case dictionary words (punctuation dropped, apostrophes kept)."""
    return re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split()


_decoders: dict[str, object] = {}  # use → its pocketsphinx decoder, built on first use
_decoder_lock = threading.Lock()


def pocketsphinx_decoder(use: str, needed_by: str, lm: str | None, **options):
    """The pocketsphinx decoder of the en-us model (acoustic model and dictionary from the wheel),
    with the wheel's language model file `lm` (None: none, for alignment) and `options`, built once
    per `use` ("align", "recognize"); hold that module's lock while decoding. `needed_by` names the
    setting that needs it in the missing-package message."""
    if use not in _decoders:
        try:
            import pocketsphinx as ps
        except ImportError as err:
            raise AlignError(f"{needed_by} needs the pocketsphinx package (pip install pocketsphinx==5.1.1; "
                             "the en-us model and LM ship inside the wheel)") from err
        config = ps.Config(hmm=ps.get_model_path("en-us/en-us"), dict=ps.get_model_path("en-us/cmudict-en-us.dict"),
                           lm=None if lm is None else ps.get_model_path(lm), loglevel="FATAL", **options)
        _decoders[use] = ps.Decoder(config)
    return _decoders[use]


def _get_decoder():
    return pocketsphinx_decoder("align", "segment.backend pocketsphinx", lm=None, fsgusefiller=False)


def align_words(audio16: np.ndarray, words: list[str], offset_s: float = 0.0) -> list[Token]:
    """Align `words` to the whole of `audio16` (16 kHz float) → tokens in seconds + offset_s."""
    with _decoder_lock:
        dec = _get_decoder()
        missing = [w for w in words if dec.lookup_word(w) is None]
        if missing:
            raise AlignError(f"words not in the pocketsphinx en-us dictionary: {sorted(set(missing))}")
        dec.set_align_text(" ".join(words))
        pcm = (np.clip(audio16, -1, 1) * 32767).astype(np.int16)
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        segs = dec.seg()
        got = [] if segs is None else [(s.word, s.start_frame, s.end_frame) for s in segs]
    got = [(re.sub(r"\(\d+\)$", "", w), a, b) for w, a, b in got if not w.startswith("<") and w != "</s>"]
    if [w for w, _, _ in got] != words:
        raise AlignError(f"pocketsphinx did not align all {len(words)} words (got {len(got)})")
    return [Token(offset_s + a * FRAME_S, offset_s + (b + 1) * FRAME_S, w) for w, a, b in got]


def match_sentences(sentence_words: list[list[str]],
                    spans: list[tuple[float, float]]) -> list[tuple[list[int], list[int]]]:
    """Monotone sentence ↔ span matching → [(sentence indices, span indices)] (either may be empty)."""
    n, m = len(sentence_words), len(spans)
    letters = np.array([max(1, sum(len(w) for w in ws)) for ws in sentence_words], float)
    durs = np.array([e - s for s, e in spans], float)
    rate = durs.sum() / letters.sum() if n and m else 1.0  # seconds per letter in this episode
    cost = np.full((n + 1, m + 1), np.inf)
    back = np.zeros((n + 1, m + 1, 2), int)
    cost[0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if not np.isfinite(cost[i, j]):
                continue
            for di, dj in MOVES:
                a, b = i + di, j + dj
                if a > n or b > m:
                    continue
                if di == 0 or dj == 0:
                    step = SKIP_PENALTY
                else:
                    actual = spans[b - 1][1] - spans[j][0]  # span run including its inner pauses
                    expected = rate * letters[i:a].sum()
                    step = (np.log(actual / expected) / LENGTH_SIGMA) ** 2 + MERGE_PENALTY * (max(di, dj) - 1)
                if cost[i, j] + step < cost[a, b]:
                    cost[a, b] = cost[i, j] + step
                    back[a, b] = (di, dj)
    out, i, j = [], n, m
    while i or j:
        di, dj = back[i, j]
        out.append((list(range(i - di, i)), list(range(j - dj, j))))
        i, j = i - di, j - dj
    return out[::-1]


def align_transcript(audio: np.ndarray, sample_rate: int, sentences: list[str],
                     spans: list[tuple[float, float]]) -> tuple[list[Token], int]:
    """Known transcript + VAD spans → (tokens in time order, number of groups left unaligned)."""
    audio16 = to_vad_rate(audio, sample_rate)
    total_s = len(audio16) / VAD_RATE
    sentence_words = [normalise(s) for s in sentences]
    tokens, failed = [], 0
    for sent_idx, span_idx in match_sentences(sentence_words, spans):
        if not span_idx:
            continue  # a sentence the VAD never heard: nothing to align it to
        group = [spans[k] for k in span_idx]
        words = [w for k in sent_idx for w in sentence_words[k]]
        start, end = max(0.0, group[0][0] - GROUP_PAD_S), min(total_s, group[-1][1] + GROUP_PAD_S)
        try:
            if not words:
                raise AlignError("no transcript words for this speech")
            aligned = align_words(audio16[int(start * VAD_RATE):int(end * VAD_RATE)], words, start)
            # the group padding is not speech: keep word edges inside the VAD span run
            aligned[0].start_s = max(aligned[0].start_s, group[0][0])
            aligned[-1].end_s = min(aligned[-1].end_s, group[-1][1])
            tokens += aligned
        except AlignError:
            failed += 1
            tokens += [Token(s, e) for s, e in group]
    return tokens, failed
