"""The real-footage regression check (nwt/real_footage, scripts/real_footage.py) on the real clips of
../shared/data/nwt_samples: the corpus builder's true cuts (fast), and the whole check at reduced
steps (slow: both corpora through every stage of dvc.yaml, then the figures). Skips when the test
set is not there."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from nwt.data.media import iter_frames, probe
from nwt.real_footage.corpus import CORPORA, FPS, build_episode, gt_clips
from nwt.real_footage.measure import skipped_parts
from nwt.real_footage.run import failed_stages

SAMPLES = REPO.parent / "shared" / "data" / "nwt_samples"
needs_samples = pytest.mark.skipif(not (SAMPLES / "gt").is_dir(), reason=f"{SAMPLES}/gt is not here")


@needs_samples
def test_joined_clips_cut_exactly_at_the_recorded_frames(tmp_path):
    clips = gt_clips(SAMPLES / "gt")[:2]
    ep = build_episode("rf_test", clips, 0, tmp_path)
    info = probe(ep.path)
    assert (info.width, info.height) == (640, 360) and info.has_audio and info.sample_rate == 44100
    assert ep.cuts == [ep.placements[0].end] and ep.n_frames == ep.placements[1].end
    frames = list(iter_frames(ep.path, FPS))
    assert len(frames) == ep.n_frames
    cut = ep.cuts[0]
    corner = np.array([f[4:20, 4:20].mean(axis=(0, 1)) for f in frames])  # (T, 3) the background's colour
    change = np.abs(np.diff(corner, axis=0)).sum(axis=1)  # (T-1,)
    assert int(np.argmax(change)) + 1 == cut and change.max() > 30
    assert change[np.arange(len(change)) != cut - 1].max() < 5  # the background changes at the cut alone
    x, y, w, h = ep.placements[0].rect
    assert x + w <= 640 and y + h == 360 and frames[0][y + h // 2, x + w // 2].std() >= 0  # the clip is inside


def test_failed_stage_is_named_with_its_exception():
    log = ("Running stage 'shots':\n> python pipeline/shots.py\nRunning stage 'evaluate':\n"
           "Traceback (most recent call last):\n  File \"x\", line 1\n"
           "ValueError: episode control needs at least two episodes\nERROR: failed to reproduce 'evaluate'\n")
    stages = ["shots", "evaluate", "export"]
    assert failed_stages(log, stages, {"shots"}) == {
        "evaluate": "ValueError: episode control needs at least two episodes",
        "export": "not run: a stage it depends on did not finish"}


def test_skipped_parts_carry_their_notes(tmp_path):
    (tmp_path / "reports" / "evaluate").mkdir(parents=True)
    (tmp_path / "reports" / "evaluate" / "metrics.json").write_text(json.dumps(
        {"gt": {"fid": None}, "fid_note": "not computed: evaluate.fid_weights is empty", "episode_control": None,
         "episode_control_note": "needs two episodes", "rtf": 1.5,
         "unseen": {"accuracy": None, "reason": "no unseen episode"}}))
    got = skipped_parts(tmp_path, ["shots", "evaluate"])
    assert got == {"evaluate.gt.fid": None, "evaluate.fid_note": "not computed: evaluate.fid_weights is empty",
                   "evaluate.episode_control": "needs two episodes",
                   "evaluate.episode_control_note": "needs two episodes",
                   "evaluate.unseen.accuracy": "no unseen episode", "evaluate.unseen.reason": "no unseen episode"}


@pytest.fixture(scope="module")
def ci_report(tmp_path_factory) -> dict:
    """The whole check at reduced steps; its report also lands in pytest's temp folder (metrics.json)."""
    from nwt.real_footage.report import real_footage_report

    before = set(Path(tempfile.gettempdir()).glob("nwt-real-footage-*"))
    report = real_footage_report(REPO, SAMPLES, ci=True, timeout_s=1200)
    (tmp_path_factory.mktemp("real_footage") / "metrics.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))  # shown with a failing test's captured output
    after = set(Path(tempfile.gettempdir()).glob("nwt-real-footage-*"))
    assert after <= before, f"the check left its temporary folder: {sorted(after - before)}"
    return report


# the first test builds the report (both corpora through every stage): ≈ 10 min on 2 idle cores,
# longer on a shared machine; the timeout covers that, not the default 900 s
@pytest.mark.slow
@pytest.mark.timeout(2700)
@needs_samples
@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_every_stage_runs_on_real_footage(ci_report, corpus):
    r = ci_report[corpus]
    assert r["stages_finished"] == r["stages_total"] >= 11, r["stages_failed"]
    assert r["episodes"] == len(CORPORA[corpus])


@pytest.mark.slow
@pytest.mark.timeout(2700)
@needs_samples
@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_real_footage_figures_are_sane(ci_report, corpus):
    r = ci_report[corpus]
    assert r["cuts"]["true"] == 10 - len(CORPORA[corpus])  # ten clips: a join between each two in an episode
    assert r["cuts"]["recall"] >= 0.9 and r["cuts"]["precision"] >= 0.9, r["cuts"]
    assert r["faces"]["detection_rate"] >= 0.8 and r["faces"]["track_coverage"] >= 0.8, r["faces"]
    assert r["crop"]["in_clip_rate"] >= 0.95 and r["crop"]["jitter_crop_px"] < 3, r["crop"]
    assert r["clips"]["kept"] >= 5 and r["clips"]["train"] > 0, r["clips"]
    # held-out real frames: the val block, or (three short episodes leave no val block) the unseen episode
    held_out = r["dvae"]["psnr_db"] if r["dvae"]["psnr_db"] is not None else r["dvae"]["unseen_psnr_db"]
    assert held_out is not None and 5 < held_out < 60, r["dvae"]
    # six training steps learn nothing: the training stages must say so
    assert r["warnings"] and not r.get("warnings_missing"), r["warnings"]
    assert all(isinstance(k, str) for k in r["skipped"])


@pytest.mark.slow
@pytest.mark.timeout(2700)
@needs_samples
def test_the_other_parts_are_measured(ci_report):
    """segment without transcript, paper framing and the lip measures ran (a missing function would say
    "not available", a failure "failed: …"), and nothing reached this session's model store."""
    parts = {"segment_auto_no_transcript": ci_report["segment_auto_no_transcript"],
             "framing.paper": ci_report["framing"]["paper"], **{f"lip.{k}": v for k, v in ci_report["lip"].items()}}
    assert set(parts) >= {"lip.gt", "lip.recon", "lip.nwt_far", "lip.nwt_mar"}, sorted(parts)
    assert not [k for k, v in parts.items() if isinstance(v, dict) and "status" in v], parts
    assert ci_report["segment_auto_no_transcript"]["boundary_error_median_ms"] is not None
    assert ci_report["segment_auto_no_transcript"]["vad_only_boundary_error_median_ms"] is not None
    assert ci_report["framing"]["paper"]["placement_error"] is not None
    for source in ("gt", "nwt_far", "nwt_mar"):
        assert ci_report["lip"][source]["mouth_open_audio_corr"] is not None, source
    # a dVAE of six steps draws no face the landmark detector finds: measured, on every clip, but no figure
    assert ci_report["lip"]["recon"]["clips"] == 10
    assert not any(Path(os.environ["NWT_HOME"]).rglob("*.pt"))
