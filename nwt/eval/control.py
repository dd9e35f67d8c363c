"""Episode control at the prior: does the look the prior is asked for show up in the codes?

The same audio is generated under two or more episode ids with the dVAE decoder's episode
embedding held fixed (`<unk>` by default), so only the prior's choice of codes can carry the
look. Each generation is summarised by colour statistics — mean RGB of the top band of the crop
(hair) and of the bottom band (shirt) — and assigned to the episode whose real frames' statistics
are nearest; `accuracy` is the share assigned to the requested episode (chance = 1 / episodes).

    from nwt.eval.control import episode_control, real_region_stats
    refs = real_region_stats((clip.meta["episode_id"], clip.frames) for clip in iter_clips(paths))
    metrics["episode_control"] = episode_control(gen, [clip.audio for clip in test_clips[:4]], refs,
                                                 default_sampling(params), seed=params.evaluate.seed)
    # → {"accuracy": …, "generations": …, "episodes": …, "per_episode_accuracy": {…}}
    metrics["episode_control"] = control_summary(control)  # {"accuracy", "generations"[, "reason"]}

A corpus that cannot be scored (fewer than two episodes with real frames, no audio) gets
`accuracy: None` and a `reason`, not an error: a one-video corpus still runs to the end.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nwt.params import SamplingParams

# bands of the 256×224 face crop, as fractions of its height
HAIR_BAND = (0.0, 0.15)  # top rows: hair (and the set behind it)
SHIRT_BAND = (0.85, 1.0)  # bottom rows: shirt / collar


def region_stats(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames → (6,) mean RGB in [0, 1] of the hair band then the shirt
    band, over all frames."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected (N, H, W, 3) frames, got {frames.shape}")
    h = frames.shape[1]
    out = []
    for lo, hi in (HAIR_BAND, SHIRT_BAND):
        a, b = int(round(lo * h)), max(int(round(lo * h)) + 1, int(round(hi * h)))
        out.append(frames[:, a:b].reshape(-1, 3).mean(0, dtype=np.float64) / 255.0)
    return np.concatenate(out)


def real_region_stats(clips: Iterable[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """(episode id, frames) pairs (e.g. from shards) → per-episode mean of `region_stats`,
    weighted by frames; one clip in memory at a time."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for episode_id, frames in clips:
        n = len(frames)
        if n == 0:
            continue
        sums[episode_id] = sums.get(episode_id, 0.0) + region_stats(frames) * n
        counts[episode_id] = counts.get(episode_id, 0) + n
    return {e: sums[e] / counts[e] for e in sums}


def nearest_episode(stats: np.ndarray, references: dict[str, np.ndarray]) -> str:
    """The episode whose reference statistics are nearest (Euclidean) to `stats`."""
    if not references:
        raise ValueError("no reference statistics")
    ids = list(references)
    dist = [float(np.linalg.norm(np.asarray(stats) - references[e])) for e in ids]
    return ids[int(np.argmin(dist))]


def control_accuracy(generated: Iterable[tuple[str, np.ndarray]], references: dict[str, np.ndarray]) -> dict:
    """(requested episode, generated-frame statistics) pairs → accuracy (share nearest to the
    requested episode's real frames), overall and per requested episode."""
    hits: dict[str, list[bool]] = {}
    for requested, stats in generated:
        if requested not in references:
            raise ValueError(f"no real-frame statistics for episode {requested!r}")
        hits.setdefault(requested, []).append(nearest_episode(stats, references) == requested)
    flat = [h for v in hits.values() for h in v]
    return dict(
        accuracy=float(np.mean(flat)) if flat else float("nan"),
        generations=len(flat),
        episodes=len(hits),
        per_episode_accuracy={e: float(np.mean(v)) for e, v in hits.items()},
    )


def episode_control(gen, audios: Iterable[np.ndarray], references: dict[str, np.ndarray], sampling: SamplingParams,
                    *, seed: int, episodes: list[str] | None = None, decode_episode: str | None = None) -> dict:
    """Generate every audio under every episode in `episodes` (default: those with reference
    statistics that the prior was trained on) with the decoder's episode fixed to
    `decode_episode` (None = `<unk>`), sampling as `sampling` says (audio i with seed `seed` + i),
    and score with `control_accuracy`.

    `gen` is a nwt.generate.Generator (anything with `episode_ids` and `from_audio(audio,
    episode_id, sampling=..., seed=..., decode_episode=..., prime=...)` returning `.frames`)."""
    if episodes is None:
        episodes = [e for e in gen.episode_ids if e in references]
    audios = list(audios)
    if len(episodes) < 2 or not audios:
        why = (f"needs at least two trained episodes with val frames, this corpus has {len(episodes)} "
               f"({', '.join(episodes) or 'none'})" if len(episodes) < 2 else "no test audio to generate from")
        return dict(accuracy=None, generations=0, episodes=len(episodes), per_episode_accuracy={}, reason=why)
    generated = []
    for i, audio in enumerate(audios):
        for episode_id in episodes:
            # unprimed: a primer would hand the prior the episode's look, and control measures
            # whether the prior's episode embedding alone carries it
            result = gen.from_audio(audio, episode_id, sampling=sampling, seed=seed + i, decode_episode=decode_episode,
                                    prime=False)
            generated.append((episode_id, region_stats(result.frames)))
    return control_accuracy(generated, {e: references[e] for e in episodes})


def control_summary(control: dict) -> dict:
    """The metrics entry of an `episode_control` result: accuracy (4 places, or None), generations,
    and the reason where it could not be scored."""
    acc = control["accuracy"]
    out = dict(accuracy=None if acc is None else round(float(acc), 4), generations=int(control["generations"]))
    if "reason" in control:
        out["reason"] = control["reason"]
    return out
