"""Shot-boundary detection (PySceneDetect) and its score against ground-truth cuts."""
from __future__ import annotations

from pathlib import Path

from nwt.data.media import MediaError, probe
from nwt.params import ShotsParams

DETECTORS = ("adaptive", "content")


def detect_shots(path: str | Path, detector: str, threshold: float, min_shot_s: float,
                 fps: int) -> list[tuple[int, int]]:
    """Shots as [start_frame, end_frame) at the pipeline `fps` (cut times mapped by timestamp)."""
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    info = probe(path)
    if not info.has_video or info.fps <= 0:
        raise MediaError("no_video", f"{Path(path).name}: no video stream to detect shots in")
    min_len = max(1, int(round(min_shot_s * info.fps)))
    if detector == "adaptive":
        det = AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_len)
    elif detector == "content":
        det = ContentDetector(threshold=threshold, min_scene_len=min_len)
    else:
        raise ValueError(f"shots.detector must be one of {DETECTORS}, got {detector!r}")
    scenes = detect(str(path), det, show_progress=False)
    n_frames = int(round(info.duration_s * fps))
    if not scenes:  # no cut found: the whole episode is one shot
        return [(0, n_frames)]
    starts = sorted({int(round(start.seconds * fps)) for start, _ in scenes} | {0})
    ends = starts[1:] + [max(n_frames, int(round(scenes[-1][1].seconds * fps)))]
    return [(s, e) for s, e in zip(starts, ends) if e > s]


def score_cuts(detected: list[int], truth: list[int], tolerance: int = 1) -> tuple[int, int, int]:
    """Greedy one-to-one matching within ±tolerance frames → (matched, n_detected, n_truth)."""
    unmatched = sorted(truth)
    matched = 0
    for cut in sorted(detected):
        best = min(unmatched, key=lambda t: abs(t - cut), default=None)
        if best is not None and abs(best - cut) <= tolerance:
            unmatched.remove(best)
            matched += 1
    return matched, len(detected), len(truth)


def episode_shots(episode: dict, cfg: ShotsParams, fps: int) -> dict:
    """Ray task: one episode → its shots and, where ground truth exists, the cut score."""
    import json

    shots = detect_shots(episode["path"], cfg.detector, cfg.threshold, cfg.min_shot_s, fps)
    score = None
    if episode.get("truth"):
        truth = json.loads(Path(episode["truth"]).read_text())
        score = score_cuts([s for s, _ in shots[1:]], truth["cuts"])
    return dict(shots=shots, score=score)
