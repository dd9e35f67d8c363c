"""The figures of reports/real_footage/metrics.json that come from other parts of nwt, not from the
pipeline run itself: segmentation without a transcript (on rendered episodes with their truth),
the paper-framing placement error, and the lip measures of the real clips, of their reconstruction
by the run's dVAE and of NWT's own generations.

A part whose function is not in this checkout is recorded as {"status": "not available: …"}; one
that fails is recorded with its error, so that one broken part does not hide the others."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml

from nwt.params import Params
from nwt.real_footage.corpus import Episode

log = logging.getLogger("nwt.real_footage")


def guarded(name: str, fn, *args, **kwargs) -> dict:
    """fn(*args) as a dict; a missing function or a failure becomes a status entry (and a log line)."""
    try:
        return fn(*args, **kwargs)
    except ImportError as exc:
        log.warning("%s: not available (%s)", name, exc)
        return dict(status=f"not available: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded in the report, which goes on with the other parts
        log.exception("%s failed", name)
        return dict(status=f"failed: {type(exc).__name__}: {str(exc)[:300]}")


def segment_no_transcript(params: Params, work: Path, episodes: int, seconds: float) -> dict:
    """Clip boundaries of `segment.backend` with the transcript withheld, on `episodes` freshly rendered
    synthetic episodes of `seconds` (seeds 1000…), against their truth; beside the VAD-only figure."""
    from nwt.data.segment_eval import boundary_error_report
    from nwt.data.synthetic import SyntheticConfig, render_episode

    out = work / "synthetic"
    config = SyntheticConfig(fps=params.media.fps, sample_rate=params.media.sample_rate, identities=1)
    pairs = []
    for k in range(episodes):
        render_episode(f"seg-{k}", 1000 + k, seconds, out, config)
        pairs.append((out / f"seg-{k}.mp4", out / f"seg-{k}.truth.json"))
    report = boundary_error_report(pairs, params.segment, params.media.timing)
    auto, vad = report["auto_no_transcript"], report["vad_only"]
    # the auto backend's figures at the top, today's VAD-only cutting beside them
    return dict(auto, vad_only_boundary_error_median_ms=vad.get("boundary_error_median_ms"), vad_only=vad,
                episodes_rendered=episodes, seconds_each=seconds)


def paper_framing(repo: Path, gt_dir: Path) -> dict:
    """framing.paper: the placement error of profiles/paper_framing.yaml's crop on the real clips."""
    from nwt.eval.framing import paper_placement_error

    profile = repo / "profiles" / "paper_framing.yaml"
    if not profile.exists():
        raise ImportError(f"{profile.relative_to(repo)} is not in this checkout")
    faces = yaml.safe_load(profile.read_text())["faces"]
    result = paper_placement_error(gt_dir, faces["face_scale"], faces["centre_shift"])
    result = dict(result) if isinstance(result, dict) else dict(placement_error=result)
    return dict(result, face_scale=faces["face_scale"], centre_shift=faces["centre_shift"])


def nwt_samples_lip(samples_dir: Path, params: Params) -> dict:
    """lip.{gt,nwt_far,nwt_mar}: the same no-judge measures on the real clips and NWT's generations."""
    from nwt.eval.landmarks import score_nwt_samples

    return score_nwt_samples(samples_dir, params.media.fps, params.media.sample_rate)


def _mean_figures(per_clip: list[dict]) -> dict:
    """Mean of each numeric figure over clips (None where no clip has it)."""
    keys = [k for k in per_clip[0] if isinstance(per_clip[0][k], (int, float)) or per_clip[0][k] is None]
    out = {}
    for k in keys:
        vals = [c[k] for c in per_clip if isinstance(c.get(k), (int, float))]
        out[k] = round(float(np.mean(vals)), 4) if vals else None
    return dict(out, clips=len(per_clip))


def recon_lip(dvae_path: Path, gt_dir: Path, episodes: list[Episode], fps: int, sr: int) -> dict:
    """lip.recon: each real clip through the run's dVAE (its own episode's embedding row), scored
    against the real clip with the same measures. The clips are 256×224 (h×w), the dVAE's frame."""
    from nwt.data.media import iter_frames, read_audio
    from nwt.eval.landmarks import LandmarkDetector, lip_measures
    from nwt.models.dvae_io import decode_codes, encode_frames, episode_index_for, load_dvae

    if not dvae_path.exists():
        return dict(status=f"not measured: the run wrote no {dvae_path.name} (train_dvae did not finish)")
    model, meta = load_dvae(dvae_path)
    episode_of = {p.clip: ep.episode_id for ep in episodes for p in ep.placements}
    detector, per_clip = LandmarkDetector(), []
    for clip in sorted(Path(gt_dir).glob("*.mp4")):
        frames = np.stack([f[:, :, ::-1] for f in iter_frames(clip, fps)])  # (T, 256, 224, 3) RGB
        if frames.shape[1:3] != (model.dims.height, model.dims.width):
            raise ValueError(f"{clip.name}: frames {frames.shape[1:3]}, the dVAE wants "
                             f"{(model.dims.height, model.dims.width)}")
        recon = decode_codes(model, encode_frames(model, frames), episode_index_for(meta, episode_of.get(clip.name)))
        per_clip.append(lip_measures(recon, read_audio(clip, sr), fps, sr, reference=frames, detector=detector))
    return _mean_figures(per_clip)
