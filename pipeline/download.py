"""Stage `download`: episodes → data/raw/ and data/download/episodes.parquet (+ ledger)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from nwt.atomic import write_json, write_parquet
from nwt.data import download
from nwt.data.ledger import Ledger
from nwt.data.media import MediaError
from nwt.data.parallel import run_tasks, shutdown
from nwt.params import load_params
from nwt.stage import DATA, stage, write_ledger

log = logging.getLogger("nwt.download")
RAW = DATA / "raw"


def main() -> None:
    p = load_params()
    cfg, t = p.download, p.media.timing
    with stage("download") as metrics:
        RAW.mkdir(parents=True, exist_ok=True)
        if cfg.source == "synthetic":
            specs = download.synthetic_specs(cfg.synthetic, t.fps, t.sample_rate)
            results = run_tasks(download.render_synthetic_episode, specs, "render episodes", raw_dir=str(RAW))
            results = [(spec["episode_id"], res) for spec, res in results]
        elif cfg.source == "manifest":
            manifest = Path(cfg.manifest)
            rows = download.read_manifest(manifest)
            archive_path = RAW / download.ARCHIVE
            archive = json.loads(archive_path.read_text()) if archive_path.exists() else {}
            jobs = [(row, archive.get(row.episode_id)) for row in rows]
            results = run_tasks(_fetch, jobs, "fetch episodes", raw_dir=str(RAW),
                                manifest_dir=str(manifest.parent.resolve()))
            results = [(row.episode_id, res) for (row, _), res in results]
            archive = {episode_id: dict(source=res["source"], digest=res["digest"]) for episode_id, res in results
                       if isinstance(res, dict) and download.URL.match(res["source"])}
            write_json(archive_path, archive)
        else:
            raise ValueError(f"download.source must be synthetic or manifest, got {cfg.source!r}")
        shutdown()

        ledger, kept = Ledger("download"), []
        for episode_id, res in results:
            if isinstance(res, MediaError):
                ledger.reject(episode_id, res.reason, str(res))
            elif isinstance(res, Exception):
                ledger.reject(episode_id, "failed", f"{type(res).__name__}: {res}")
            else:
                ledger.keep(episode_id, f"{res['duration_s']:.1f} s")
                kept.append(res)
        for row in ledger.rows:
            if row["status"] == "rejected":
                log.warning("episode %s rejected (%s): %s", row["item"], row["reason"], row["detail"])
        _remove_stale(RAW, {r["episode_id"] for r in kept})
        table = pd.DataFrame(kept)
        table.insert(1, "episode_index", range(len(table)))
        write_parquet(DATA / "download" / "episodes.parquet", table)
        write_ledger(ledger)
        metrics.update(episodes_seen=len(ledger.rows), episodes_kept=ledger.kept, episodes_rejected=ledger.rejected,
                       hours=round(float(table["duration_s"].sum()) / 3600, 4) if len(table) else 0.0)


def _fetch(job: tuple, raw_dir: str, manifest_dir: str) -> dict:
    row, archived = job
    return download.fetch_manifest_episode(row, raw_dir, manifest_dir, archived)


def _remove_stale(raw: Path, keep_ids: set[str]) -> None:
    """data/raw is persisted across runs: drop files of episodes no longer listed or kept."""
    for path in raw.iterdir():
        episode_id = path.name.split(".")[0]
        if (path.is_file() and episode_id not in keep_ids and not path.name.startswith(".")
                and path.name != download.ARCHIVE):
            path.unlink()


if __name__ == "__main__":
    main()
