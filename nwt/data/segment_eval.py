"""How well does segmentation cut without a transcript? Clip boundaries on rendered episodes with
the transcript withheld, against their truth.

`boundary_error_report` cuts each (episode, truth) pair twice, as the segment stage would on an
episode with no known transcript: `auto` with the configured `segment.no_transcript` (the real
choice on real footage), and VAD spans only. The truth is used only to score.

Both are scored against the same reference — every speech boundary of a kept clip against the
nearest true word start (for a clip start) or word end (for a clip end) — because a clip should
begin and end at a word's edge whatever found it. The segment stage's own figure scores a VAD pause
cut against sentence edges instead (`boundary_error_median_ms_stage`, given beside it); on the
rendered corpus every pause is a sentence edge, so the two agree for VAD pause cuts. Boundaries
forced by a shot edge are not scored (nwt.data.segment._boundary_errors).

Because those unscored edges differ between methods (a VAD span is clipped at a shot edge, in
the middle of a word; a word crossing it is dropped), `edges_inside_word` counts every speech edge
of a kept clip, shot edges included: the share lying more than INSIDE_WORD_S inside a true word,
i.e. clips that start or end with part of a word.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nwt.constants import Timing
from nwt.data.segment import _boundary_errors, check_config, episode_clips
from nwt.params import SegmentParams, with_changes

INSIDE_WORD_S = 0.05  # an edge this far inside a true word cuts it (more than timing noise)


def _face_shots(truth: dict, timing: Timing, where: Path) -> list[tuple[int, int, int]]:
    """The truth's face shots as the segment stage's (shot, start_frame, end_frame)."""
    if int(truth.get("fps", timing.fps)) != timing.fps:
        raise ValueError(f"{where}: rendered at {truth['fps']} fps, but media.fps is {timing.fps}")
    if not truth.get("sentences") or not truth.get("words"):
        raise ValueError(f"{where}: truth has no sentences/words to score boundaries against")
    return [(k, int(s["start_frame"]), int(s["end_frame"])) for k, s in enumerate(truth["shots"])
            if s["kind"] == "face"]


def _score(episodes: list[tuple[Path, Path]], cfg: SegmentParams, timing: Timing) -> dict:
    """Cut every episode under cfg with its transcript withheld → figures against the truth."""
    word_err, stage_err, lengths, methods, compute_s, inside = [], [], [], set(), 0.0, []
    for video, truth_path in episodes:
        truth = json.loads(Path(truth_path).read_text())
        shots = _face_shots(truth, timing, Path(truth_path))
        job = dict(path=str(video), truth=str(truth_path), shots=shots, transcript=False)
        res = episode_clips(job, cfg, timing.fps, timing.sample_rate)
        kept = [c for c in res["clips"] if c.status == "kept"]
        starts = np.array([w["start_s"] for w in truth["words"]])
        ends = np.array([w["end_s"] for w in truth["words"]])
        for c in kept:
            word_err += _boundary_errors(truth, c, shots, timing.fps, word_level=True)
            inside += [bool(np.any((starts + INSIDE_WORD_S < t) & (t < ends - INSIDE_WORD_S)))
                       for t in (c.speech_start_s, c.speech_end_s)]
        stage_err += res["boundary_errors_s"]
        lengths += [c.end_s - c.start_s for c in kept]
        methods.add(res["method"])
        compute_s += res["compute_s"]

    def ms(q: float, errors: list[float]) -> float | None:
        return round(1000 * float(np.quantile(errors, q)), 1) if errors else None

    return {"boundary_error_median_ms": ms(0.5, word_err), "boundary_error_p90_ms": ms(0.9, word_err),
            "boundary_error_median_ms_stage": ms(0.5, stage_err), "boundaries": len(word_err),
            "edges_inside_word": round(float(np.mean(inside)), 3) if inside else None,
            "clips": len(lengths), "clip_mean_s": round(float(np.mean(lengths)), 3) if lengths else None,
            "method": "+".join(sorted(methods)), "compute_s": round(compute_s, 1)}


def boundary_error_report(episodes: list[tuple[Path, Path]], cfg: SegmentParams, timing: Timing) -> dict:
    """(episode mp4, truth json) pairs → clip-boundary errors without the transcript, per method.

    → {"auto_no_transcript": {...}, "vad_only": {...}}, each with boundary_error_median_ms (against
    the nearest true word edge), boundary_error_p90_ms, boundary_error_median_ms_stage (the segment
    stage's convention), boundaries (how many were scored), edges_inside_word (share of all clip
    speech edges cutting a true word), clips, clip_mean_s, method (what cut the episodes: recognize
    | vad) and compute_s. `cfg.backend` is ignored: `auto` with `cfg.no_transcript` is what is
    measured (`with_changes(cfg, no_transcript="recognize")` measures recognition).
    """
    if not episodes:
        raise ValueError("boundary_error_report needs at least one (episode mp4, truth json) pair")
    auto = with_changes(cfg, backend="auto")
    check_config(auto)
    vad_only = _score(episodes, with_changes(auto, no_transcript="vad"), timing)
    if auto.no_transcript == "vad":  # auto cuts on the VAD spans too: the same figures, not measured twice
        return {"auto_no_transcript": dict(vad_only), "vad_only": vad_only}
    return {"auto_no_transcript": _score(episodes, auto, timing), "vad_only": vad_only}


__all__ = ["boundary_error_report"]
