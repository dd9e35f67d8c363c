"""The download stage: episodes from a manifest (yt-dlp for URLs, local paths as they are), or
the built-in synthetic presenter corpus, into `data/raw/`, plus the episodes table.

The episodes table fixes each kept episode's integer index (its row order); every model maps
episode ids to these indices.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from nwt.data.media import MediaError, check_episode
from nwt.params import SyntheticParams

log = logging.getLogger(__name__)

EPISODE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
URL = re.compile(r"^https?://", re.IGNORECASE)
MIN_EPISODE_S = 5.0  # anything shorter cannot hold a single clip with context
YTDLP_FORMAT = "best[height<=720][ext=mp4][acodec!=none]/bv*[height<=720]+ba/b[height<=720]/b"


@dataclass(frozen=True)
class ManifestRow:
    episode_id: str
    source: str
    notes: str = ""


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of `episode_id,source[,notes]`. Bad ids are kept here and rejected by the stage."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found (download.manifest in params.yaml)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"episode_id", "source"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"manifest {path} lacks column(s) {sorted(missing)}; want episode_id,source[,notes]")
        rows = [ManifestRow(r["episode_id"].strip(), (r["source"] or "").strip(), (r.get("notes") or "").strip())
                for r in reader]
    ids = [r.episode_id for r in rows]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise ValueError(f"manifest {path} repeats episode ids: {dups}")
    return rows


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


ARCHIVE = "archive.json"  # in data/raw: episode id → source and digest of finished downloads


def fetch_manifest_episode(row: ManifestRow, raw_dir: str, manifest_dir: str, archived: dict | None = None) -> dict:
    """One manifest row → `raw_dir/<id>.mp4` (copied or downloaded), probed and checked.

    A URL whose file is already in `raw_dir` with the digest the archive recorded for the same
    source is not fetched again (data/raw persists across reruns). Raises MediaError with the
    ledger reason; runs as a Ray task.
    """
    if not EPISODE_ID.match(row.episode_id):
        # checked before any path or command line is built from the id
        raise MediaError("bad_id", f"episode id {row.episode_id!r} is not [A-Za-z0-9_-]+")
    raw = Path(raw_dir)
    target = raw / f"{row.episode_id}.mp4"
    if URL.match(row.source):
        finished = (archived is not None and archived.get("source") == row.source and target.exists()
                    and file_digest(target) == archived.get("digest"))
        if not finished:
            _download_url(row.source, target)
    else:
        src = Path(row.source)
        if not src.is_absolute():
            src = Path(manifest_dir) / src
        if not src.is_file():
            raise MediaError("download_failed", f"{row.episode_id}: local source {src} does not exist")
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(src, tmp)
        tmp.replace(target)
    info = check_episode(target, MIN_EPISODE_S)
    return dict(episode_id=row.episode_id, source=row.source, path=str(target), digest=file_digest(target),
                duration_s=info.duration_s, src_fps=info.fps, width=info.width, height=info.height,
                src_sample_rate=info.sample_rate, truth="")


def _download_url(url: str, target: Path) -> None:
    """yt-dlp's Python API (no shell): ≤720p mp4 with audio, retries; only a finished file is renamed."""
    try:
        import yt_dlp
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise RuntimeError("yt-dlp is not installed: `pip install -e .`") from exc
    part = target.with_name(f".{target.stem}.download")
    opts = {
        "format": YTDLP_FORMAT,
        "outtmpl": str(part) + ".%(ext)s",
        "merge_output_format": "mp4",
        "retries": 3,
        "fragment_retries": 3,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.download([url])
    except Exception as exc:  # noqa: BLE001 - yt-dlp raises many types; all mean "not fetched"
        for stale in target.parent.glob(f".{target.stem}.download*"):
            stale.unlink()
        raise MediaError("download_failed", f"{url}: {str(exc).splitlines()[0][:300]}") from None
    produced = sorted(target.parent.glob(f".{target.stem}.download.*"))
    finished = [p for p in produced if not p.name.endswith((".part", ".ytdl"))]
    if not finished:
        raise MediaError("download_failed", f"{url}: yt-dlp finished without a file")
    finished[0].replace(target)
    for stale in produced[1:]:
        stale.unlink(missing_ok=True)


def render_synthetic_episode(spec: dict, raw_dir: str) -> dict:
    """One synthetic episode (Ray task). Reuses an existing render made from the same spec."""
    import json

    from nwt.data.synthetic import SyntheticConfig, render_episode

    raw = Path(raw_dir)
    episode_id = spec["episode_id"]
    mp4, truth, spec_file = raw / f"{episode_id}.mp4", raw / f"{episode_id}.truth.json", raw / f"{episode_id}.spec.json"
    if not (mp4.exists() and truth.exists() and spec_file.exists() and json.loads(spec_file.read_text()) == spec):
        config = SyntheticConfig(fps=spec["fps"], sample_rate=spec["sample_rate"], identities=spec["identities"])
        render_episode(episode_id, spec["seed"], spec["seconds"], raw, config)
        from nwt.atomic import write_json

        write_json(spec_file, spec)
    info = check_episode(mp4, MIN_EPISODE_S)
    return dict(episode_id=episode_id, source="synthetic", path=str(mp4), digest=file_digest(mp4),
                duration_s=info.duration_s, src_fps=info.fps, width=info.width, height=info.height,
                src_sample_rate=info.sample_rate, truth=str(truth))


def synthetic_specs(cfg: SyntheticParams, fps: int, sample_rate: int) -> list[dict]:
    """The download.synthetic section → one render spec per episode (what `render_synthetic_episode` takes)."""
    return [
        dict(episode_id=f"synth-{i:03d}", seed=cfg.seed * 10_000 + i, seconds=cfg.seconds,
             identities=cfg.identities, fps=fps, sample_rate=sample_rate)
        for i in range(cfg.episodes)
    ]
