"""The real-footage check from end to end → the dict of reports/real_footage/metrics.json.

For each corpus of nwt.real_footage.corpus.CORPORA: build its episodes from the real clips, run the
pipeline on them in a temporary checkout (nwt.real_footage.run), measure the run
(nwt.real_footage.measure), then delete the checkout. Then the parts from elsewhere in nwt
(nwt.real_footage.extras). `ci` applies profiles/real_footage_ci.yaml (few steps, small models)."""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from nwt.params import load_params
from nwt.real_footage import extras
from nwt.real_footage.corpus import CORPORA, build_corpus
from nwt.real_footage.measure import read_metrics, run_figures, run_params, skipped_parts
from nwt.real_footage.run import make_checkout, run_pipeline

log = logging.getLogger("nwt.real_footage")
LIP_RECON_CORPUS = "three_videos"  # lip.recon uses this run's dVAE (trained on all three episodes' train clips)


def profiles_for(repo: Path, ci: bool) -> list[Path]:
    names = ["real_footage.yaml"] + (["real_footage_ci.yaml"] if ci else [])
    return [repo / "profiles" / n for n in names]


def check_corpus(name: str, repo: Path, gt_dir: Path, work: Path, ci: bool, timeout_s: float) -> tuple[dict, dict]:
    """(the corpus's figures, lip.recon when name is LIP_RECON_CORPUS else {}); work/name is scratch."""
    t0 = time.perf_counter()
    base = work / name
    episodes = build_corpus(name, gt_dir, base / "footage")
    checkout = make_checkout(repo, base, profiles_for(repo, ci), episodes)
    log.info("%s: %d episodes built; dvc repro in %s", name, len(episodes), checkout)
    try:
        run = run_pipeline(checkout, base, timeout_s, log_path=base / "dvc_repro.log")
        log.info("%s: %d/%d stages finished in %.0f s%s", name, len(run.finished), len(run.stages), run.wall_s,
                 "" if run.ok else f"; not finished: {run.failed}")
        figures = extras.guarded(f"{name} figures", run_figures, checkout, episodes)
        figures.update(stages_finished=len(run.finished), stages_total=len(run.stages), stages_failed=run.failed,
                       skipped=skipped_parts(checkout, run.stages),
                       stage_wall_s={s: (read_metrics(checkout, s) or {}).get("wall_s") for s in run.finished},
                       repro_wall_s=run.wall_s)
        recon = {}
        if name == LIP_RECON_CORPUS:
            media = run_params(checkout)["media"]
            recon = extras.guarded("lip.recon", extras.recon_lip, checkout / "models" / "dvae" / "dvae.pt", gt_dir,
                                    episodes, media["fps"], media["sample_rate"])
            recon = dict(recon, model=f"the {name} run's dVAE")
    finally:
        shutil.rmtree(checkout, ignore_errors=True)  # the throwaway models go at once, whatever happened
    figures["wall_s"] = round(time.perf_counter() - t0, 1)
    return figures, recon


def real_footage_report(repo: Path, samples_dir: Path, ci: bool, corpora: list[str] | None = None,
                        timeout_s: float = 3600.0, work: Path | None = None, segment_episodes: int | None = None,
                        segment_seconds: float | None = None) -> dict:
    """The whole check. samples_dir: the nwt_samples folder (gt/, far/, mar/). work: scratch folder
    (default: a new temporary one, deleted at the end; a given one is left for inspection).
    segment_episodes / segment_seconds: the rendered episodes segmentation without a transcript is
    measured on (default: the embedded corpus's size in full mode, 2 × 30 s with `ci`)."""
    t0 = time.perf_counter()
    gt_dir = samples_dir / "gt"
    corpora = corpora or list(CORPORA)
    scratch = work or Path(tempfile.mkdtemp(prefix="nwt-real-footage-"))
    params = load_params(repo / "params.yaml")
    corpus_size = params.download.synthetic
    segment_episodes = segment_episodes or (2 if ci else corpus_size.episodes)
    segment_seconds = segment_seconds or (30.0 if ci else corpus_size.seconds)
    report: dict = dict(mode="ci" if ci else "full", date=date.today().isoformat(),
                        profiles=[str(p.relative_to(repo)) for p in profiles_for(repo, ci)])
    try:
        lip: dict = {}
        for name in corpora:
            report[name], recon = check_corpus(name, repo, gt_dir, scratch, ci, timeout_s)
            if recon:
                lip["recon"] = recon
        report["segment_auto_no_transcript"] = extras.guarded(
            "segment_auto_no_transcript", extras.segment_no_transcript, params, scratch, segment_episodes,
            segment_seconds)
        report["framing"] = dict(paper=extras.guarded("framing.paper", extras.paper_framing, repo, gt_dir))
        samples = extras.guarded("lip (nwt_samples)", extras.nwt_samples_lip, samples_dir, params)
        report["lip"] = dict(samples, **lip) if "status" not in samples else dict(samples_status=samples["status"],
                                                                                  **lip)
    finally:
        if work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return report
