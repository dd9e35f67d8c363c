"""Figures of one real-footage run, from its checkout's data/ and reports/ and the true placements.

Definitions (docs: the real-footage section of docs/design.md):
- cuts: the shots stage's cuts (first frame of each shot but the first) against the true joins,
  matched one to one within ± CUT_TOLERANCE frames (nwt.data.shots.score_cuts).
- faces.detection_rate: share of frames sampled every `faces.stride` frames in which the stage's
  detector backend finds a face whose centre lies inside the real clip's rectangle (every clip shows
  the presenter's face throughout, so every sample has a true face). faces.track_coverage: share of
  all frames that lie in a kept face track (what the pipeline went on with).
- crop.jitter_px: mean frame-to-frame motion of the crop centre within a kept shot, in px of the
  source frame (the faces stage's crop_jitter_px on the rendered corpus); jitter_crop_px: the same
  in px of the 256-px-high output crop. crop.in_clip_rate: share of kept-track frames whose crop
  centre lies inside the clip's rectangle (the crop follows the presenter, not the set).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from nwt.constants import CROP_H
from nwt.data.shots import score_cuts
from nwt.real_footage.corpus import Episode, Placement

CUT_TOLERANCE = 2  # frames either side: a cut found within this counts (PySceneDetect's cut frame may lag one)
TRAINING_STAGES = ("train_dvae", "train_prior", "train_sync")


def read_metrics(checkout: Path, stage: str) -> dict | None:
    path = checkout / "reports" / stage / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_params(checkout: Path) -> dict:
    """The run's params.yaml as plain data: read without nwt.params, whose code may have moved on in
    this checkout since the copy was made (only a few plain keys are read from it)."""
    return yaml.safe_load((checkout / "params.yaml").read_text())


def _placement_at(episode: Episode, frame: int) -> Placement:
    for p in episode.placements:
        if p.start <= frame < p.end:
            return p
    return episode.placements[-1]


def _inside(rect: tuple[int, int, int, int], x: float, y: float) -> bool:
    return rect[0] <= x < rect[0] + rect[2] and rect[1] <= y < rect[1] + rect[3]


def cut_figures(checkout: Path, episodes: list[Episode]) -> dict:
    shots_file = checkout / "data" / "shots" / "shots.parquet"
    if not shots_file.exists():
        return dict(recall=None, precision=None, note="the shots stage did not finish")
    shots = pd.read_parquet(shots_file)
    matched = n_det = n_true = 0
    for ep in episodes:
        found = sorted(int(s) for s in shots[shots.episode_id == ep.episode_id].start_frame if s > 0)
        m, d, t = score_cuts(found, ep.cuts, tolerance=CUT_TOLERANCE)
        matched, n_det, n_true = matched + m, n_det + d, n_true + t
    return dict(recall=round(matched / n_true, 4) if n_true else None,
                precision=round(matched / n_det, 4) if n_det else None,
                true=n_true, detected=n_det, tolerance_frames=CUT_TOLERANCE)


def detection_rate(checkout: Path, episodes: list[Episode]) -> float:
    """The faces stage's detector, rerun every `faces.stride` frames (see the module docstring)."""
    from nwt.data.face_backends import make_detector
    from nwt.data.media import iter_frames

    p = run_params(checkout)
    faces = p["faces"]
    detector = make_detector(faces["backend"], faces["min_face_px"])
    samples = found = 0
    for ep in episodes:
        for k, frame in enumerate(iter_frames(ep.path, p["media"]["fps"])):
            if k % faces["stride"]:
                continue
            samples += 1
            boxes = detector(frame)
            if len(boxes):
                x, y, w, h = (float(v) for v in boxes[0][:4])
                found += _inside(_placement_at(ep, k).rect, x + w / 2, y + h / 2)
    return round(found / samples, 4) if samples else 0.0


def face_figures(checkout: Path, episodes: list[Episode]) -> tuple[dict, dict]:
    """(faces.*, crop.*) from data/faces/tracks.parquet and a detector rerun."""
    tracks_file = checkout / "data" / "faces" / "tracks.parquet"
    if not tracks_file.exists():
        note = "the faces stage did not finish"
        return dict(detection_rate=None, note=note), dict(jitter_px=None, note=note)
    tracks = pd.read_parquet(tracks_file)
    by_id = {ep.episode_id: ep for ep in episodes}
    steps, steps_crop, inside, covered = [], [], [], 0
    for row in tracks.itertuples():
        ep = by_id.get(row.episode_id)
        if ep is None:
            continue
        xy = np.stack([np.asarray(row.crop_cx, float), np.asarray(row.crop_cy, float)], axis=1)  # (T, 2)
        covered += len(xy)
        if len(xy) > 1:
            step = np.linalg.norm(np.diff(xy, axis=0), axis=1)  # (T-1,) source px per frame
            steps.extend(step.tolist())
            steps_crop.extend((step * CROP_H / np.asarray(row.crop_h, float)[1:]).tolist())
        inside.extend(_inside(_placement_at(ep, row.start_frame + t).rect, x, y) for t, (x, y) in enumerate(xy))
    total = sum(ep.n_frames for ep in episodes)
    faces = dict(detection_rate=detection_rate(checkout, episodes), track_coverage=round(covered / total, 4),
                 shots_kept=int(len(tracks)))
    crop = dict(jitter_px=round(float(np.mean(steps)), 3) if steps else None,
                jitter_crop_px=round(float(np.mean(steps_crop)), 3) if steps_crop else None,
                in_clip_rate=round(float(np.mean(inside)), 4) if inside else None)
    return faces, crop


def skipped_parts(checkout: Path, stages: list[str]) -> dict:
    """Every null figure and every note or reason string in the run's metrics, by dotted path."""
    out: dict[str, str | None] = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif node is None:
            out.setdefault(path, None)
        elif isinstance(node, str) and any(w in path.rsplit(".", 1)[-1] for w in ("note", "reason", "skip")):
            out[path] = node

    for stage in stages:
        metrics = read_metrics(checkout, stage)
        if metrics:
            walk(metrics, stage)
    def why(path: str) -> str | None:
        """A null's explanation: a sibling `<key>_note` / `<key>_reason`, else its dict's `reason` / `note`."""
        parent = path.rpartition(".")[0]
        for candidate in (path + "_note", path + "_reason", parent + ".reason", parent + ".note"):
            if isinstance(out.get(candidate), str):
                return out[candidate]
        return None

    return {path: value if value is not None else why(path) for path, value in out.items()}


def training_warnings(checkout: Path) -> tuple[list[str], list[str]]:
    """(warnings as 'stage: text', training stages whose metrics have no `warnings` list)."""
    found, missing = [], []
    for stage in TRAINING_STAGES:
        metrics = read_metrics(checkout, stage)
        if metrics is None or not isinstance(metrics.get("warnings"), list):
            missing.append(stage)
            continue
        found.extend(f"{stage}: {w}" for w in metrics["warnings"])
    return found, missing


def run_figures(checkout: Path, episodes: list[Episode]) -> dict:
    """Everything measured on one finished (or partly finished) run, except the stage counts."""
    faces, crop = face_figures(checkout, episodes)
    shard = read_metrics(checkout, "shard") or {}
    dvae = read_metrics(checkout, "train_dvae") or {}
    warnings, no_list = training_warnings(checkout)
    splits = {s: shard.get(f"clips_{s}") for s in ("train", "val", "test", "unseen")}
    figures = dict(
        episodes=len(episodes), frames=sum(ep.n_frames for ep in episodes),
        cuts=cut_figures(checkout, episodes), faces=faces, crop=crop,
        clips=dict(kept=sum(v or 0 for v in splits.values()) if shard else None, **splits),
        dvae=dict(psnr_db=_round((dvae.get("val") or {}).get("psnr_db")),
                  unseen_psnr_db=_round((dvae.get("unseen") or {}).get("psnr_db"))),
        warnings=warnings)
    if no_list:
        figures["warnings_missing"] = no_list  # stages whose metrics carry no `warnings` list yet
    return figures


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(float(x), digits)
