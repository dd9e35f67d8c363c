"""Stage `segment`: speech inside face-valid shots → clips table data/segment/clips.parquet.

The backend is `segment.backend` (see nwt/data/segment.py); how each episode was cut (align |
recognize | vad | whisperx) is logged, counted in the metrics (`episodes_by_method`) and listed per
episode in reports/segment/episodes.json (not in the ledger: data/segment stays as it was for an
unchanged corpus, so the stages after it do not rerun). With whisperx, the episodes are
transcribed first, one after another, by a single worker in the ASR venv (its models load once;
it is GPU-bound anyway); the Ray tasks then cut clips from those words. An episode whose
transcription fails is rejected per shot with the worker's message; a missing ASR env stops the
stage with the command that makes it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from nwt.atomic import write_json, write_parquet
from nwt.data.asr.whisperx_client import AsrError, client_from_params
from nwt.data.ledger import Ledger
from nwt.data.media import MediaError
from nwt.data.parallel import run_tasks, shutdown
from nwt.data.segment import METHODS, check_config, episode_clips
from nwt.params import SegmentParams, load_params
from nwt.stage import DATA, REPORTS, log, stage, write_ledger

COLUMNS = ["episode_id", "clip", "key", "shot", "start_s", "end_s", "speech_start_s", "speech_end_s", "words"]
HIST_BIN_S = 0.5


def main() -> None:
    p = load_params()
    cfg, t = p.segment, p.media.timing
    check_config(cfg)
    with stage("segment") as metrics:
        episodes = pd.read_parquet(DATA / "download" / "episodes.parquet")
        tracks = pd.read_parquet(DATA / "faces" / "tracks.parquet")
        jobs = []
        for ep in episodes.itertuples():
            ep_tracks = tracks[tracks.episode_id == ep.episode_id]
            if len(ep_tracks):
                jobs.append(dict(episode_id=ep.episode_id, path=ep.path, truth=ep.truth,
                                 shots=[(int(r.shot), int(r.start_frame), int(r.end_frame))
                                        for r in ep_tracks.itertuples()]))
        asr_failed = _transcribe(jobs, cfg) if cfg.backend == "whisperx" else {}
        todo = [j for j in jobs if j["episode_id"] not in asr_failed]
        results = run_tasks(episode_clips, todo, "segment speech", cfg=cfg, fps=t.fps, sample_rate=t.sample_rate)
        results += [(j, asr_failed[j["episode_id"]]) for j in jobs if j["episode_id"] in asr_failed]
        shutdown()

        ledger, rows, errors = Ledger("segment"), [], []
        audio_s = compute_s = speech_s = 0.0
        unaligned, vad_only, per_episode = 0, [], []
        for job, res in results:
            episode_id = job["episode_id"]
            if isinstance(res, Exception):
                reason = res.reason if isinstance(res, MediaError) else "failed"
                for shot, _, _ in job["shots"]:
                    ledger.reject(f"{episode_id}/shot{shot:03d}", reason, f"{type(res).__name__}: {res}")
                continue
            for shot in res["silent_shots"]:
                ledger.reject(f"{episode_id}/shot{shot:03d}", "silence", "no speech in this face shot")
            per_episode.append(dict(episode_id=episode_id, method=res["method"],
                                    clips=sum(c.status == "kept" for c in res["clips"])))
            for k, (c, words) in enumerate(zip(res["clips"], res["words"])):
                key = f"{episode_id}_{k:05d}"
                span = f"{c.start_s:.2f}-{c.end_s:.2f} s"
                if c.status != "kept":
                    ledger.reject(key, c.reason, span)
                    continue
                ledger.keep(key, span)
                rows.append(dict(episode_id=episode_id, clip=k, key=key, shot=c.shot, start_s=round(c.start_s, 3),
                                 end_s=round(c.end_s, 3), speech_start_s=round(c.speech_start_s, 3),
                                 speech_end_s=round(c.speech_end_s, 3), words=[w["word"] for w in words]))
            errors += res["boundary_errors_s"]
            audio_s, compute_s = audio_s + res["audio_s"], compute_s + res["compute_s"]
            speech_s += res["speech_s"]
            unaligned += res["unaligned_groups"]
            if res["vad_only"]:
                vad_only.append(episode_id)
        clips = pd.DataFrame(rows, columns=COLUMNS)
        write_parquet(DATA / "segment" / "clips.parquet", clips)
        write_ledger(ledger)
        lengths = (clips.end_s - clips.start_s).to_numpy()
        _write_histogram(lengths)
        metrics.update(clips=len(clips), clips_rejected=ledger.rejected,
                       clip_hours=round(float(lengths.sum()) / 3600, 4),
                       clip_mean_s=round(float(lengths.mean()), 3) if len(lengths) else 0.0,
                       speech_hours=round(speech_s / 3600, 4), audio_hours=round(audio_s / 3600, 4),
                       unaligned_groups=unaligned, episodes_vad_only=len(vad_only),
                       episodes_by_method={m: sum(e["method"] == m for e in per_episode) for m in METHODS})
        _record_methods(per_episode, cfg)
        if vad_only:
            log.warning("segment.backend %s: no transcript for %s; cut on VAD spans only", cfg.backend,
                        ", ".join(vad_only))
        if compute_s > 0:  # speech detection + alignment, per worker, in × real time (whisperx: in its worker)
            metrics["segment_speed_x_realtime"] = round(audio_s / compute_s, 1)
        if errors:
            metrics["boundary_error_median_ms"] = round(1000 * float(np.median(errors)), 1)


def _transcribe(jobs: list[dict], cfg: SegmentParams) -> dict[str, Exception]:
    """whisperx: every episode's words into its job (job["words"]) → {episode_id: error} for failures."""
    failed: dict[str, Exception] = {}
    with client_from_params(cfg) as asr:  # a missing ASR env raises here, stopping the stage
        for job in jobs:
            try:
                job["words"] = asr.transcribe(job["path"])["words"]
            except AsrError as err:
                if asr.proc is None or asr.proc.poll() is not None:
                    raise  # the worker died: every later episode would fail the same way
                failed[job["episode_id"]] = err
    return failed


def _record_methods(per_episode: list[dict], cfg: SegmentParams) -> None:
    """Log how each episode was cut and list it in reports/segment/episodes.json."""
    for e in per_episode:
        log.info("segment %s: %s (backend %s), %d clips", e["episode_id"], e["method"], cfg.backend, e["clips"])
    write_json(REPORTS / "segment" / "episodes.json", sorted(per_episode, key=lambda e: e["episode_id"]))


def _write_histogram(lengths: np.ndarray) -> None:
    """Clip-length histogram as a DVC plot (reports/segment/clip_lengths.json)."""
    top = max(float(lengths.max()) if len(lengths) else 0.0, HIST_BIN_S)
    counts, edges = np.histogram(lengths, bins=np.arange(0, top + HIST_BIN_S, HIST_BIN_S))
    write_json(REPORTS / "segment" / "clip_lengths.json",
               [dict(length_s=round(float(e), 2), clips=int(c)) for e, c in zip(edges[:-1], counts)])


if __name__ == "__main__":
    main()
