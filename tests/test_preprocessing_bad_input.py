"""Bad input through the real preprocessing stages (manifest mode): every broken source gets a
clear reason in its stage's ledger, and the run goes on with the rest. Also the URL path
(yt-dlp against an HTTP server on 127.0.0.1) and sources at other rates (30 fps, VFR, 44.1 kHz
stereo), which must come out as 25 fps / 16 kHz mono clips."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, synthetic_config

from nwt.data.shards import iter_clips, shard_paths
from nwt.data.synthetic import render_episode

pytestmark = pytest.mark.slow
STAGES = ("download", "shots", "faces", "segment", "shard")


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("sources")
    render_episode("good", 11, 14.0, src, synthetic_config())
    render_episode("twofaces", 12, 10.0, src, synthetic_config(faces_per_frame=2))
    render_episode("noface", 13, 8.0, src, synthetic_config(faces_per_frame=0))
    render_episode("quiet", 14, 14.0, src, synthetic_config(silence_s=8.0))
    good = str(src / "good.mp4")
    _ffmpeg("-i", good, "-vf", "fps=30", "-ar", "44100", "-ac", "2", "-c:v", "libx264", "-c:a", "aac",
            str(src / "fps30_stereo.mp4"))
    # variable frame rate: drop 2 of every 5 frames but keep the original timestamps
    _ffmpeg("-i", good, "-vf", r"select=lt(mod(n\,5)\,3)", "-fps_mode", "vfr", "-c:v", "libx264", "-c:a", "copy",
            str(src / "vfr.mp4"))
    _ffmpeg("-i", good, "-an", "-c", "copy", str(src / "noaudio.mp4"))
    _ffmpeg("-i", good, "-vn", "-c", "copy", str(src / "audioonly.m4a"))
    (src / "truncated.mp4").write_bytes((src / "good.mp4").read_bytes()[:50_000])
    (src / "notvideo.mp4").write_text("just some text\n")
    return src


@pytest.fixture(scope="module")
def http_server(sources):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(sources))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, sources, http_server) -> Path:
    work = tmp_path_factory.mktemp("badrun")
    shutil.copytree(REPO / "pipeline", work / "pipeline")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["download"].update(source="manifest", manifest="manifest.csv")
    params["shard"]["unseen_episodes"] = 0
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    rows = [("good", sources / "good.mp4"), ("twofaces", sources / "twofaces.mp4"),
            ("noface", sources / "noface.mp4"), ("quiet", sources / "quiet.mp4"),
            ("fps30", sources / "fps30_stereo.mp4"), ("vfr", sources / "vfr.mp4"),
            ("noaudio", sources / "noaudio.mp4"), ("audioonly", sources / "audioonly.m4a"),
            ("truncated", sources / "truncated.mp4"), ("notvideo", sources / "notvideo.mp4"),
            ("missing", sources / "missing.mp4"), ("bad/id", sources / "good.mp4"),
            ("byurl", f"{http_server}/good.mp4"), ("deadurl", f"{http_server}/gone.mp4")]
    (work / "manifest.csv").write_text("episode_id,source\n" + "".join(f"{i},{s}\n" for i, s in rows))
    env = dict(os.environ, NWT_WORKERS="2", RAY_AUTH_MODE="disabled")
    for stage in STAGES:
        proc = subprocess.run([sys.executable, f"pipeline/{stage}.py"], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{stage} failed:\n{proc.stderr[-4000:]}"
    return work


def _ledger(run_dir: Path, stage: str) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "data" / stage / "ledger.parquet").set_index("item")


def test_download_rejects_each_bad_source_with_its_reason(run_dir):
    ledger = _ledger(run_dir, "download")
    expected = {"noaudio": "no_audio", "audioonly": "no_video", "truncated": "corrupt", "notvideo": "corrupt",
                "missing": "download_failed", "bad/id": "bad_id", "deadurl": "download_failed"}
    for item, reason in expected.items():
        assert ledger.loc[item, "status"] == "rejected" and ledger.loc[item, "reason"] == reason, item
        assert ledger.loc[item, "detail"], item  # a message a person can act on
    kept = set(ledger[ledger.status == "kept"].index)
    assert kept == {"good", "twofaces", "noface", "quiet", "fps30", "vfr", "byurl"}
    assert (run_dir / "data/raw/byurl.mp4").stat().st_size == (run_dir / "data/raw/good.mp4").stat().st_size
    assert not list((run_dir / "data/raw").glob(".*"))  # no partial downloads left behind


def test_face_filter_rejects_faceless_and_two_face_shots(run_dir):
    ledger = _ledger(run_dir, "faces")
    noface = ledger[ledger.index.str.startswith("noface/")]
    assert len(noface) and (noface.reason == "no_face").all()
    twofaces = ledger[ledger.index.str.startswith("twofaces/")]
    assert (twofaces.reason == "multiple_faces").any() and not (twofaces.status == "kept").any()
    good = ledger[ledger.index.str.startswith("good/")]
    assert (good.status == "kept").any()


def test_long_silence_is_not_made_into_clips(run_dir):
    clips = pd.read_parquet(run_dir / "data/segment/clips.parquet")
    quiet = clips[clips.episode_id == "quiet"]
    truth = yaml.safe_load((run_dir / "data/raw/quiet.mp4").with_suffix("").with_suffix(".truth.json").read_text()) \
        if (run_dir / "data/raw/quiet.truth.json").exists() else None
    assert len(quiet)
    if truth and truth.get("silence"):
        s, e = truth["silence"]["start_s"], truth["silence"]["end_s"]
        for c in quiet.itertuples():  # no clip's speech lies inside the silent stretch
            assert not (c.speech_start_s > s + 0.2 and c.speech_end_s < e - 0.2)


def test_other_rates_become_pipeline_rate_clips(run_dir):
    shards = run_dir / "data/shards"
    clips = {c.key: c for split in ("train", "val", "test") for c in iter_clips(shard_paths(shards, split))}
    for episode in ("fps30", "vfr", "good"):
        mine = [c for k, c in clips.items() if k.startswith(episode + "_")]
        assert mine, episode
        for c in mine:
            assert c.meta["fps"] == 25 and c.meta["sample_rate"] == 16000
            assert c.audio.ndim == 1 and len(c.audio) == len(c.frames) * 640
            assert c.frames.shape[1:] == (256, 224, 3)


def test_counts_add_up_in_every_stage(run_dir):
    for stage in STAGES:
        ledger = _ledger(run_dir, stage)
        assert ledger.index.is_unique
        assert len(ledger) == (ledger.status == "kept").sum() + (ledger.status == "rejected").sum()
