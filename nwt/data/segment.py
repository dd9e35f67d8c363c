"""Speech segmentation: speech inside face-valid shots, cut into clips at word boundaries or pauses.

Backends (`segment.backend`), all giving *tokens* — units a clip never splits:
- `webrtcvad` / `silero`: VAD only; a token is a speech span (pauses < `min_pause_s` bridged).
- `pocketsphinx`: a VAD (`segment.vad`) finds the speech, and the known transcript (the synthetic
  corpus's truth sentences) is force-aligned to it; a token is a word. An episode with no known
  transcript (a local file in a manifest) is cut on its VAD spans and counted in the stage's
  metrics as `episodes_vad_only` (and logged), never silently.
- `auto` (the default): forced alignment as `pocketsphinx` where a transcript is known; otherwise
  `segment.no_transcript` — `vad`: the VAD spans, or `recognize`: pocketsphinx word recognition
  inside the VAD spans (nwt.data.asr.recognize; a token is a recognised word, cut only at its
  edges). On the rendered corpus with the transcript withheld (nwt.data.segment_eval) VAD spans
  gave the smaller median boundary error, recognition fewer clip edges inside a word, at ≈45× the
  compute; `vad` is the default. Which method cut each episode (`METHODS`) is logged and recorded.
- `whisperx`: transcription + wav2vec2 word alignment in its own venv (`make asr-env`), run by the
  stage before the Ray tasks (see nwt.data.asr.whisperx_client); a token is a word.

Cutting (`cut_clips`), per face-valid shot:
1. tokens outside the shot are dropped; a word crossing the shot edge is dropped (never cut inside
   a word); a VAD span crossing it is clipped to the shot (no word is known there);
2. a silence longer than `max_gap_s` always ends a clip;
3. between those, a dynamic programme picks the cuts: each clip costs ((L − target) / target)²,
   plus `WORD_CUT_PENALTY` when it ends at a word boundary that is not a pause (gap < min_pause_s),
   plus `SHORT_PENALTY` when shorter than `min_clip_s`; a clip longer than `max_clip_s` is not
   allowed. So clips end at pauses where they can, at word boundaries where they must, and their
   lengths gather around `target_clip_s`;
4. a clip is its tokens' extent plus up to `PAD_S` of context each side (never beyond the shot,
   nor past the middle of the gap to the neighbouring clip). Clips shorter than `min_clip_s` are
   rejected `too_short`. A single token longer than `max_clip_s` (a VAD span with no pause, or a
   pathological ASR word) is cut into equal pieces, marked as `split` cuts.

Scoring against the synthetic truth (`_boundary_errors`): each speech boundary of a kept clip is
compared with the nearest true boundary of its kind — sentence starts/ends for pause cuts of the
VAD backends, word starts/ends for word-level backends and for forced splits. Cuts forced by a
shot edge are not speech boundaries and are not scored.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nwt.data.asr.align import Token, align_transcript
from nwt.data.asr.recognize import recognise_words
from nwt.data.asr.vad import WEBRTC_FRAME_S, silero_spans, webrtcvad_spans
from nwt.data.media import read_audio
from nwt.params import SegmentParams

BACKENDS = ("auto", "webrtcvad", "silero", "pocketsphinx", "whisperx")
VADS = ("webrtcvad", "silero")
NO_TRANSCRIPT = ("recognize", "vad")  # what `auto` does on an episode with no known transcript
# How an episode was cut: align (known transcript, forced alignment), recognize (recognised word
# edges, no transcript), vad (speech spans only), whisperx (ASR words + wav2vec2 alignment).
METHODS = ("align", "recognize", "vad", "whisperx")
TRANSCRIBED = ("align", "whisperx")  # methods whose words are a transcript, exported as clip words
PAD_S = 0.1  # context kept before the first and after the last token of a clip
WORD_CUT_PENALTY = 0.5  # DP cost of ending a clip between two words with no pause between them
SHORT_PENALTY = 10.0  # DP cost of a clip shorter than min_clip_s (it will be rejected)
SHOT_EDGE_TOL_S = 0.03  # a boundary this close to a shot edge was forced by the cut


def detect_spans(audio: np.ndarray, sample_rate: int, cfg: SegmentParams, vad: str) -> list[tuple[float, float]]:
    """Speech spans by the VAD `vad` (webrtcvad | silero) with the segment section's settings."""
    if vad == "webrtcvad":
        return webrtcvad_spans(audio, sample_rate, cfg.vad_aggressiveness, cfg.min_pause_s)
    if vad == "silero":
        return silero_spans(audio, sample_rate, cfg.vad_threshold, cfg.min_pause_s)
    raise ValueError(f"unknown VAD {vad!r}; choose one of {VADS}")


def check_config(cfg: SegmentParams) -> None:
    """Fail early, with the choices, on a bad segment section."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"segment.backend {cfg.backend!r} is not available; choose one of {BACKENDS}")
    if cfg.backend in ("pocketsphinx", "auto") and cfg.vad not in VADS:
        raise ValueError(f"segment.vad {cfg.vad!r} is not available; choose one of {VADS}")
    if cfg.no_transcript not in NO_TRANSCRIPT:
        raise ValueError(f"segment.no_transcript {cfg.no_transcript!r} is not available; choose one of {NO_TRANSCRIPT}")
    lo, mid, hi = cfg.min_clip_s, cfg.target_clip_s, cfg.max_clip_s
    if not 0 < lo <= mid <= hi:
        raise ValueError(f"need 0 < min_clip_s <= target_clip_s <= max_clip_s, got {lo}, {mid}, {hi}")
    if hi < 2 * PAD_S + 0.1:
        raise ValueError(f"max_clip_s {hi} leaves no room for speech inside {PAD_S} s padding")


@dataclass
class ClipCandidate:
    shot: int
    start_s: float  # padded, inside the shot
    end_s: float
    speech_start_s: float  # first token's start / last token's end
    speech_end_s: float
    status: str = "kept"
    reason: str = "ok"
    start_cut: str = "pause"  # why the clip starts/ends here: pause | word | split | gap | shot
    end_cut: str = "pause"


def _tokens_in_shot(tokens: list[Token], a: float, b: float) -> list[Token]:
    out = []
    for t in tokens:
        if t.end_s <= a or t.start_s >= b:
            continue
        if t.word is not None:
            if t.start_s >= a and t.end_s <= b:
                out.append(t)  # a word crossing the shot edge is dropped, never cut
        else:
            out.append(Token(max(t.start_s, a), min(t.end_s, b)))
    return out


def _split_long(tokens: list[Token], max_speech_s: float) -> list[tuple[Token, str, str]]:
    """Tokens longer than max_speech_s → equal pieces; each with the kind of its start/end cut."""
    out = []
    for t in tokens:
        pieces = max(1, int(np.ceil((t.end_s - t.start_s) / max_speech_s)))
        edges = np.linspace(t.start_s, t.end_s, pieces + 1)
        for k, (s, e) in enumerate(zip(edges[:-1], edges[1:])):
            out.append((Token(float(s), float(e), t.word), "split" if k else "", "split" if k < pieces - 1 else ""))
    return out


def cut_clips(tokens: list[Token], shot: int, shot_start_s: float, shot_end_s: float, min_clip_s: float,
              max_clip_s: float, target_clip_s: float, min_pause_s: float, max_gap_s: float) -> list[ClipCandidate]:
    """The tokens of one face-valid shot → clip candidates (see the module docstring)."""
    units = _split_long(_tokens_in_shot(tokens, shot_start_s, shot_end_s), max_clip_s - 2 * PAD_S)
    if not units:
        return []
    # runs: a gap longer than max_gap_s always separates clips
    runs, run = [], [units[0]]
    for u in units[1:]:
        if u[0].start_s - run[-1][0].end_s > max_gap_s:
            runs.append(run)
            run = [u]
        else:
            run.append(u)
    runs.append(run)

    def length(first: Token, last: Token) -> float:
        return min(shot_end_s, last.end_s + PAD_S) - max(shot_start_s, first.start_s - PAD_S)

    groups: list[list[tuple[Token, str, str]]] = []
    for run in runs:
        n = len(run)
        best = np.full(n + 1, np.inf)
        prev = np.zeros(n + 1, int)
        best[0] = 0.0
        for j in range(1, n + 1):
            last = run[j - 1][0]
            if j < n:  # what kind of cut ends a clip after token j-1
                gap = run[j][0].start_s - last.end_s
                forced = run[j - 1][2] == "split"
                penalty = 0.0 if gap >= min_pause_s and not forced else WORD_CUT_PENALTY
            else:
                penalty = 0.0
            for i in range(j - 1, -1, -1):
                span = length(run[i][0], last)
                if span > max_clip_s + 1e-9 and i < j - 1:
                    break  # longer clips only get longer as i decreases
                cost = ((span - target_clip_s) / target_clip_s) ** 2 + penalty
                if span < min_clip_s:
                    cost += SHORT_PENALTY
                if best[i] + cost < best[j]:
                    best[j], prev[j] = best[i] + cost, i
        bounds, j = [], n
        while j > 0:
            bounds.append((prev[j], j))
            j = prev[j]
        groups += [run[i:j] for i, j in reversed(bounds)]

    clips = []
    for k, g in enumerate(groups):
        first, last = g[0][0], g[-1][0]
        lo = shot_start_s if k == 0 else (groups[k - 1][-1][0].end_s + first.start_s) / 2
        hi = shot_end_s if k == len(groups) - 1 else (last.end_s + groups[k + 1][0][0].start_s) / 2
        c = ClipCandidate(shot, max(lo, first.start_s - PAD_S), min(hi, last.end_s + PAD_S),
                          first.start_s, last.end_s)
        c.start_cut = _cut_kind(g[0][1], first.start_s, shot_start_s, groups[k - 1][-1][0] if k else None, first,
                                min_pause_s, max_gap_s)
        after = groups[k + 1][0][0] if k + 1 < len(groups) else None
        c.end_cut = _cut_kind(g[-1][2], last.end_s, shot_end_s, last, after, min_pause_s, max_gap_s)
        if c.end_s - c.start_s < min_clip_s - 1e-9:
            c.status, c.reason = "rejected", "too_short"
        clips.append(c)
    return clips


def _cut_kind(split: str, t: float, shot_edge: float, before: Token | None, after: Token | None,
              min_pause_s: float, max_gap_s: float) -> str:
    if split:
        return "split"
    if abs(t - shot_edge) <= SHOT_EDGE_TOL_S:
        return "shot"
    if before is None or after is None:
        return "pause"  # first/last speech of the shot, with silence before/after it
    gap = after.start_s - before.end_s
    return "gap" if gap > max_gap_s else "pause" if gap >= min_pause_s else "word"


def episode_method(cfg: SegmentParams, truth: dict | None) -> str:
    """Which of METHODS cuts an episode under cfg, given its truth (None: no known transcript)."""
    if cfg.backend == "whisperx":
        return "whisperx"
    if cfg.backend in VADS:
        return "vad"
    if truth and truth.get("sentences"):
        return "align"
    return cfg.no_transcript if cfg.backend == "auto" else "vad"


def episode_tokens(audio: np.ndarray, sample_rate: int, cfg: SegmentParams, truth: dict | None,
                   words: list[dict] | None = None) -> dict:
    """One episode's audio → tokens per the backend, with the method, speech total and timings."""
    method = episode_method(cfg, truth)
    t0 = time.perf_counter()
    unaligned = 0
    if method == "whisperx":
        if words is None:
            raise ValueError("segment.backend whisperx: the stage must transcribe the episode first")
        tokens = [Token(float(w["start_s"]), float(w["end_s"]), str(w["word"])) for w in words]
        spans = [(t.start_s, t.end_s) for t in tokens]
    else:
        spans = detect_spans(audio, sample_rate, cfg, cfg.backend if cfg.backend in VADS else cfg.vad)
        if method == "align":
            tokens, unaligned = align_transcript(audio, sample_rate, [s["text"] for s in truth["sentences"]], spans)
        elif method == "recognize":
            tokens = recognise_words(audio, sample_rate, spans)
        else:
            tokens = [Token(s, e) for s, e in spans]
    # a word-level backend fell back to VAD spans for want of a transcript: counted, never silent
    vad_only = cfg.backend in ("pocketsphinx", "auto") and method == "vad"
    return dict(tokens=tokens, unaligned_groups=unaligned, speech_s=float(sum(e - s for s, e in spans)),
                compute_s=time.perf_counter() - t0, vad_only=vad_only, method=method)


def episode_clips(job: dict, cfg: SegmentParams, fps: int, sample_rate: int) -> dict:
    """Ray task: one episode's kept shots → clip candidates, plus boundary errors vs truth.

    job["transcript"] (default True) False withholds the truth's sentences from the cutter while
    still scoring against the truth: the no-transcript measurement (nwt.data.segment_eval).
    """
    audio = read_audio(job["path"], sample_rate)
    truth = json.loads(Path(job["truth"]).read_text()) if job.get("truth") else None
    found = episode_tokens(audio, sample_rate, cfg, truth if job.get("transcript", True) else None, job.get("words"))
    tokens = found["tokens"]
    word_level = any(t.word is not None for t in tokens)
    clips, silent_shots = [], []
    for shot, start, end in job["shots"]:
        shot_clips = cut_clips(tokens, shot, start / fps, end / fps, cfg.min_clip_s, cfg.max_clip_s,
                               cfg.target_clip_s, cfg.min_pause_s, cfg.max_gap_s)
        if not shot_clips:
            silent_shots.append(shot)
        clips += shot_clips
    errors, words = [], []
    for c in clips:
        if word_level and found["method"] in TRANSCRIBED:
            words.append([{"word": t.word, "start_s": round(t.start_s, 3), "end_s": round(t.end_s, 3)}
                          for t in tokens if t.word is not None and c.start_s <= t.start_s and t.end_s <= c.end_s])
        else:  # VAD spans or recognised edges: the words come from the truth where there is one
            words.append(_words_in(truth, c) if truth else [])
        if truth and c.status == "kept":
            errors += _boundary_errors(truth, c, job["shots"], fps, word_level)
    return dict(clips=clips, words=words, silent_shots=silent_shots, boundary_errors_s=errors,
                speech_s=found["speech_s"], audio_s=len(audio) / sample_rate, compute_s=found["compute_s"],
                unaligned_groups=found["unaligned_groups"], vad_only=found["vad_only"], method=found["method"])


def _words_in(truth: dict, clip: ClipCandidate) -> list[dict]:
    return [w for w in truth["words"] if clip.start_s <= w["start_s"] < clip.end_s]


def _boundary_errors(truth: dict, clip: ClipCandidate, shots: list, fps: int, word_level: bool) -> list[float]:
    """Distance of each clip speech boundary to the nearest true boundary of its kind (see module doc)."""
    sent = (np.array([s["start_s"] for s in truth["sentences"]]), np.array([s["end_s"] for s in truth["sentences"]]))
    word = (np.array([w["start_s"] for w in truth["words"]]), np.array([w["end_s"] for w in truth["words"]]))
    cut_times = np.array(sorted({s / fps for _, s, _ in shots} | {e / fps for _, _, e in shots}))
    out = []
    for k, (t, kind) in enumerate(((clip.speech_start_s, clip.start_cut), (clip.speech_end_s, clip.end_cut))):
        if kind == "shot" or (len(cut_times) and np.min(np.abs(cut_times - t)) <= max(WEBRTC_FRAME_S, SHOT_EDGE_TOL_S)):
            continue
        ref = word[k] if (word_level or kind == "split") else sent[k]
        if len(ref):
            out.append(float(np.min(np.abs(ref - t))))
    return out


__all__ = ["BACKENDS", "METHODS", "NO_TRANSCRIPT", "ClipCandidate", "PAD_S", "Token", "check_config", "cut_clips",
           "detect_spans", "episode_clips", "episode_method", "episode_tokens"]
