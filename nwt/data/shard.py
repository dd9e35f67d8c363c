"""The shard stage's per-episode work: crop, resize, resample, write WebDataset shards.

Each Ray task writes its own episode's shards, `{split}-{episode_index:04d}{chunk:02d}.tar`,
so names (and contents) do not depend on how many workers ran or in which order.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nwt.constants import CROP_H, CROP_W, Timing
from nwt.data.media import iter_frames, read_audio
from nwt.data.shards import ShardWriter, clip_sample
from nwt.geometry import crop_frame

MAX_CHUNKS = 100  # shards per split per episode that the naming scheme allows


def clip_frames(start_s: float, end_s: float, fps: int) -> tuple[int, int]:
    """Clip times → (first frame, frame count) on the pipeline's frame grid."""
    first = int(round(start_s * fps))
    return first, max(0, int(round(end_s * fps)) - first)


def episode_shards(job: dict, out_dir: str, timing: Timing, clips_per_shard: int) -> dict:
    """Ray task: one episode's clips (with split, crop track) → shard files; returns counts.

    Frames stream through once; each clip is written as soon as its last frame is cropped, so
    memory holds only the clips that overlap the current frame, whatever the episode length.
    """
    fps = timing.fps
    clips = sorted(job["clips"], key=lambda c: c["start_s"])
    spans = [clip_frames(c["start_s"], c["end_s"], fps) for c in clips]
    tracks = [np.array([c["crop_cx"], c["crop_cy"], c["crop_h"]]).T for c in clips]  # (shot frames, 3)
    audio = read_audio(job["path"], timing.sample_rate)
    truth = json.loads(Path(job["truth"]).read_text()) if job.get("truth") else None
    writers: dict[str, ShardWriter] = {}
    counts: dict[str, int] = {}
    results: dict[int, dict] = {}
    open_clips: dict[int, np.ndarray] = {}  # clip i → (n, CROP_H, CROP_W, 3) frames being filled
    next_clip = 0
    last_frame = -1
    for k, frame in enumerate(iter_frames(job["path"], fps)):
        last_frame = k
        while next_clip < len(clips) and spans[next_clip][0] <= k:
            open_clips[next_clip] = np.zeros((spans[next_clip][1], CROP_H, CROP_W, 3), np.uint8)
            next_clip += 1
        for i in list(open_clips):
            first, n = spans[i]
            local = min(len(tracks[i]) - 1, k - clips[i]["shot_start_frame"])
            open_clips[i][k - first] = crop_frame(frame, tracks[i][local])[..., ::-1]  # BGR → RGB
            if k == first + n - 1:
                results[i] = _write_clip(clips[i], open_clips.pop(i), first, audio, truth, job, timing, writers,
                                         clips_per_shard, out_dir)
                counts[clips[i]["split"]] = counts.get(clips[i]["split"], 0) + 1
    for i, c in enumerate(clips):
        if i not in results:
            first, n = spans[i]
            results[i] = dict(key=c["key"], ok=False,
                              detail=f"video ends at frame {last_frame + 1}, clip needs frames {first}-{first + n}")
    n_shards = 0
    for w in writers.values():
        w.close()
        n_shards += w.n_shards
    return dict(results=[results[i] for i in range(len(clips))], counts=counts, shards=n_shards)


def _write_clip(c: dict, frames: np.ndarray, first: int, audio: np.ndarray, truth: dict | None, job: dict,
                timing: Timing, writers: dict, clips_per_shard: int, out_dir: str) -> dict:
    fps, spf, n = timing.fps, timing.samples_per_frame, len(frames)
    clip_audio = audio[first * spf:(first + n) * spf]
    clip_audio = np.pad(clip_audio, (0, n * spf - len(clip_audio)))  # (n × spf,)
    local = [min(len(c["crop_cx"]) - 1, first + j - c["shot_start_frame"]) for j in range(n)]
    meta = dict(episode_id=job["episode_id"], episode_index=job["episode_index"], split=c["split"],
                start_s=first / fps, end_s=(first + n) / fps, fps=fps, shot=int(c["shot"]), words=list(c["words"]),
                crop_track=[[c["crop_cx"][m], c["crop_cy"][m], c["crop_h"][m]] for m in local])
    if truth:
        to_truth = truth["fps"] / fps  # ground truth is indexed at the renderer's fps
        idx = [min(truth["n_frames"] - 1, int(round((first + j) * to_truth))) for j in range(n)]
        meta["truth"] = dict(mouth_open=[truth["mouth_open"][m] for m in idx],
                             face_boxes=[truth["face_boxes"][m] for m in idx])
    split = c["split"]
    if split not in writers:
        writers[split] = ShardWriter(out_dir, split, clips_per_shard,
                                     start_index=int(job["episode_index"]) * MAX_CHUNKS,
                                     max_shards=MAX_CHUNKS)
    writers[split].write(clip_sample(c["key"], frames, clip_audio, timing.sample_rate, meta))
    return dict(key=c["key"], ok=True, detail=f"{split}, {n} frames")
