"""Speech segmentation: VAD speech spans inside face-valid shots, grouped into clips.

Backend `webrtcvad` (offline, no model): 30 ms frames, pauses shorter than `min_pause_s`
bridged, bursts shorter than `MIN_SPEECH_S` dropped. Clips are runs of whole speech spans
(cut at pauses) no longer than `max_clip_s`, padded by `PAD_S` and kept inside their shot.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nwt.data.media import read_audio

VAD_RATE = 16000  # webrtcvad accepts 8/16/32/48 kHz; the VAD always runs at 16 kHz
VAD_FRAME_S = 0.03
MIN_SPEECH_S = 0.15  # shorter bursts are clicks or breaths, not words
PAD_S = 0.1  # context kept before the first and after the last word of a clip


def speech_spans(audio: np.ndarray, sample_rate: int, aggressiveness: int, min_pause_s: float) -> list[tuple[float, float]]:
    """(S,) float audio → [(start_s, end_s)] of speech."""
    import webrtcvad

    if sample_rate != VAD_RATE:
        from scipy.signal import resample_poly

        g = np.gcd(sample_rate, VAD_RATE)
        audio = resample_poly(audio, VAD_RATE // g, sample_rate // g)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    hop = int(VAD_RATE * VAD_FRAME_S)
    vad = webrtcvad.Vad(int(aggressiveness))
    flags = np.array([vad.is_speech(pcm[i:i + hop].tobytes(), VAD_RATE) for i in range(0, len(pcm) - hop + 1, hop)])
    spans = _runs(flags)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and (start - merged[-1][1]) * VAD_FRAME_S < min_pause_s:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(s * VAD_FRAME_S, e * VAD_FRAME_S) for s, e in merged if (e - s) * VAD_FRAME_S >= MIN_SPEECH_S]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


@dataclass
class ClipCandidate:
    shot: int
    start_s: float  # padded, inside the shot
    end_s: float
    speech_start_s: float  # VAD onset of the first span / offset of the last
    speech_end_s: float
    status: str = "kept"
    reason: str = "ok"


def group_clips(spans: list[tuple[float, float]], shot: int, shot_start_s: float, shot_end_s: float,
                min_clip_s: float, max_clip_s: float) -> list[ClipCandidate]:
    """Group the speech spans of one shot into clips ≤ max_clip_s; mark short ones too_short."""
    inside = [(max(s, shot_start_s), min(e, shot_end_s)) for s, e in spans if e > shot_start_s and s < shot_end_s]
    groups: list[list[tuple[float, float]]] = []
    for span in inside:
        if groups and span[1] - groups[-1][0][0] + 2 * PAD_S <= max_clip_s:
            groups[-1].append(span)
        else:
            groups.append([span])
    out = []
    for g in groups:
        speech_start, speech_end = g[0][0], g[-1][1]
        # a single span longer than max_clip_s is cut into equal pieces (no pause to cut at)
        pieces = max(1, int(np.ceil((speech_end - speech_start + 2 * PAD_S) / max_clip_s)))
        edges = np.linspace(speech_start, speech_end, pieces + 1)
        for a, b in zip(edges[:-1], edges[1:]):
            c = ClipCandidate(shot, max(shot_start_s, a - PAD_S), min(shot_end_s, b + PAD_S), float(a), float(b))
            if c.end_s - c.start_s < min_clip_s:
                c.status, c.reason = "rejected", "too_short"
            out.append(c)
    return out


def episode_clips(job: dict, cfg: dict, fps: int, sample_rate: int) -> dict:
    """Ray task: one episode's kept shots → clip candidates, plus boundary errors vs truth."""
    audio = read_audio(job["path"], sample_rate)
    spans = speech_spans(audio, sample_rate, cfg["vad_aggressiveness"], cfg["min_pause_s"])
    clips, silent_shots = [], []
    for shot, start, end in job["shots"]:
        found = group_clips(spans, shot, start / fps, end / fps, cfg["min_clip_s"], cfg["max_clip_s"])
        if not found:
            silent_shots.append(shot)
        clips += found
    truth = json.loads(Path(job["truth"]).read_text()) if job.get("truth") else None
    errors, words = [], []
    for c in clips:
        words.append(_words_in(truth, c) if truth else [])
        if truth and c.status == "kept":
            errors += _boundary_errors(truth, c, job["shots"], fps)
    return dict(clips=clips, words=words, silent_shots=silent_shots, boundary_errors_s=errors,
                speech_s=float(sum(e - s for s, e in spans)))


def _words_in(truth: dict, clip: ClipCandidate) -> list[dict]:
    return [w for w in truth["words"] if clip.start_s <= w["start_s"] < clip.end_s]


def _boundary_errors(truth: dict, clip: ClipCandidate, shots: list, fps: int) -> list[float]:
    """Distance of each clip speech boundary to the nearest true sentence boundary.

    Boundaries forced by a shot cut are not speech boundaries and are not scored.
    """
    starts = np.array([s["start_s"] for s in truth["sentences"]])
    ends = np.array([s["end_s"] for s in truth["sentences"]])
    cut_times = {start / fps for _, start, _ in shots} | {end / fps for _, _, end in shots}
    out = []
    for t, ref in ((clip.speech_start_s, starts), (clip.speech_end_s, ends)):
        if len(ref) and min(abs(t - c) for c in cut_times) > VAD_FRAME_S:
            out.append(float(np.min(np.abs(ref - t))))
    return out
