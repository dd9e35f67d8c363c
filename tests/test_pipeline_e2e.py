"""The real pipeline, end to end, at the tiny profile: `dvc repro`, ledgers, metrics, a second
`dvc repro` that does nothing, `dvc exp run -S prior.layers=N` that reruns only the prior and
what follows, `nwt generate` from the trained models and, from another folder, from the
exported bundle, and `dvc push` to a folder remote, then `dvc pull` in a fresh clone that
generates without training and whose gallery plays."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from checkout_copy import BIN, copy_checkout, run

from nwt.params import load_params

pytestmark = pytest.mark.slow


_run = run


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory) -> Path:
    """A fresh git clone-alike of this checkout at the tiny profile, after one `dvc repro`."""
    work = copy_checkout(tmp_path_factory.mktemp("e2e") / "repo", ["profiles/tiny.yaml"], "tiny")
    _run(["dvc", "repro"], work)
    return work


def test_every_item_is_accounted_for(pipeline_repo):
    data = pipeline_repo / "data"
    stages = ("download", "shots", "faces", "segment", "shard")
    ledgers = {s: pd.read_parquet(data / s / "ledger.parquet") for s in stages}
    for stage, ledger in ledgers.items():
        assert set(ledger.status) <= {"kept", "rejected"}, stage
        assert ledger.item.is_unique, stage
        assert (ledger[ledger.status == "rejected"].reason != "ok").all(), stage
    episodes = pd.read_parquet(data / "download" / "episodes.parquet")
    assert len(ledgers["download"]) == 3 and sorted(episodes.episode_id) == sorted(
        ledgers["download"][ledgers["download"].status == "kept"].item)
    # each stage's items are exactly what the stage before it kept
    assert set(ledgers["shots"].item) == set(episodes.episode_id)
    shots = pd.read_parquet(data / "shots" / "shots.parquet")
    assert len(ledgers["faces"]) == len(shots)
    assert set(ledgers["shots"][ledgers["shots"].status == "kept"].item) == set(shots.episode_id)
    clips = pd.read_parquet(data / "segment" / "clips.parquet")
    assert set(ledgers["shard"].item) == set(clips.key)
    kept_segment = ledgers["segment"][ledgers["segment"].status == "kept"]
    assert set(kept_segment.item) == set(clips.key)
    # the synthetic corpus has face-less slides: some shots must be rejected for no_face
    assert (ledgers["faces"].reason == "no_face").any()
    shard_metrics = json.loads((pipeline_repo / "reports/shard/metrics.json").read_text())
    kept_shard = ledgers["shard"][ledgers["shard"].status == "kept"]
    assert len(kept_shard) == sum(shard_metrics[f"clips_{s}"] for s in ("train", "val", "test", "unseen"))


def test_metrics_cover_every_stage(pipeline_repo):
    out = _run(["dvc", "metrics", "show", "--json"], pipeline_repo)
    flat = json.dumps(json.loads(out[out.index("{"):]))
    for key in ("episodes_kept", "cut_recall", "face_detection_rate", "clip_hours", "clips_train", "psnr_db",
                "perplexity", "nll_bits_per_code", "mouth_audio_corr", "rtf", "lse_c", "lse_d", "lse_c_ratio",
                "offset_recovery_rate", "frechet_sync_feat", "codec"):
        assert f'"{key}"' in flat, key


def test_gallery_lists_the_samples(pipeline_repo):
    page = (pipeline_repo / "reports/index.html").read_text()
    samples = sorted((pipeline_repo / "reports/evaluate/samples").glob("*.webm"))
    assert samples and all(f"evaluate/samples/{p.name}" in page for p in samples)
    assert '<table id="metrics">' in page


def test_second_repro_runs_nothing(pipeline_repo):
    out = _run(["dvc", "repro"], pipeline_repo)
    assert "Running stage" not in out, out


def test_changing_prior_layers_reruns_only_the_prior_evaluate_and_export(pipeline_repo):
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], pipeline_repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], pipeline_repo)
    layers = load_params(pipeline_repo / "params.yaml").prior.layers
    out = _run(["dvc", "exp", "run", "-n", "layers-a", "-S", f"prior.layers={layers + 1}"], pipeline_repo)
    ran = sorted({line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")})
    assert ran == ["evaluate", "export", "train_prior"], out[-3000:]

    # a second experiment, then `dvc exp show` puts both side by side with their metrics
    _run(["dvc", "exp", "run", "-n", "layers-b", "-S", f"prior.layers={layers + 2}"], pipeline_repo)
    rows = list(csv.DictReader(io.StringIO(_run(["dvc", "exp", "show", "--csv", "--no-pager"], pipeline_repo))))
    by_name = {row["Experiment"]: row for row in rows if row["Experiment"]}
    assert {"layers-a", "layers-b"} <= set(by_name), rows
    a, b = by_name["layers-a"], by_name["layers-b"]
    layers_col = next(c for c in rows[0] if c.split(":")[-1] == "prior.layers")
    assert (a[layers_col], b[layers_col]) == (str(layers + 1), str(layers + 2))
    for key in ("nll_bits_per_code", "lse_c_ratio"):
        column = next(c for c in rows[0] if c.split(":")[-1].endswith(key))
        assert a[column] and b[column], (key, a[column], b[column])  # both measured
    nll = next(c for c in rows[0] if c.endswith("nll_bits_per_code"))
    assert a[nll] != b[nll]  # different priors, different figures


def test_nwt_generate_makes_an_mp4_with_the_audio(pipeline_repo, tmp_path):
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello, this is a short test of the presenter."], check=True)
    out = tmp_path / "video.mp4"
    _run([str(BIN / "nwt"), "generate", "--audio", str(speech), "--out", str(out)], pipeline_repo)
    from nwt.data.media import probe

    info = probe(out)
    assert info.has_video and info.has_audio and (info.width, info.height) == (224, 256)
    assert info.duration_s > 1.5
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=comment", "-of", "csv=p=0",
                           str(out)], capture_output=True, text=True).stdout
    assert "generated by nwt" in tags


def test_nwt_generate_from_the_exported_bundle_elsewhere(pipeline_repo, tmp_path):
    """The export stage's bundle, used from a folder with no params.yaml and no models/."""
    from nwt.bundle import load_bundle

    bundle = load_bundle(pipeline_repo / "models/bundle/nwt.pt")
    refs = bundle.references()  # a look per episode with clips (every episode of the tiny corpus has some)
    assert bundle.provenance["source"] == "dvc repro" and refs and set(refs) <= set(bundle.episode_ids)
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello from the exported bundle."], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run([str(BIN / "nwt"), "generate", "--model", str(pipeline_repo / "models/bundle/nwt.pt"), "--audio", str(speech),
          "--out", "video.mp4", "--episode", bundle.episode_ids[0]], elsewhere)
    from nwt.data.media import probe

    info = probe(elsewhere / "video.mp4")
    assert info.has_video and info.has_audio and (info.width, info.height) == (224, 256)


def test_push_then_a_fresh_clone_pulls_and_generates_without_training(pipeline_repo, tmp_path):
    """The project's default DVC remote `nwt` (.dvc/config), its url pointed at a temporary folder
    with `dvc remote modify --local` (as a user points it elsewhere; config.local is not committed):
    `dvc push`, then in a fresh `git clone` the same override and `dvc pull` bring the models, data
    and gallery videos, nothing is left to run, `nwt generate` works there, and the gallery plays."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(git + ["add", "-A"], pipeline_repo)
    _run(git + ["commit", "-q", "--allow-empty", "-m", "pushed"], pipeline_repo)
    remote = tmp_path / "remote"
    _run(["dvc", "remote", "modify", "--local", "nwt", "url", str(remote)], pipeline_repo)
    _run(["dvc", "push"], pipeline_repo)
    assert any(remote.rglob("*"))

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(pipeline_repo), str(clone)], tmp_path)
    assert not (clone / "models/prior").exists() and not (clone / ".dvc/config.local").exists()
    _run(["dvc", "remote", "modify", "--local", "nwt", "url", str(remote)], clone)
    _run(["dvc", "pull"], clone)
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], clone)

    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello from a pulled model."], check=True)
    out = _run([str(BIN / "nwt"), "generate", "--audio", str(speech), "--out", "video.mp4"], clone)
    assert "this checkout's last dvc repro" in out
    from nwt.data.media import probe

    info = probe(clone / "video.mp4")
    assert info.has_video and info.has_audio and (info.width, info.height) == (224, 256)

    page = clone / "reports/index.html"
    sources = re.findall(r'<video[^>]*\ssrc="([^"]+)"', page.read_text())
    assert sources and all((page.parent / src).is_file() for src in sources), sources
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    assert chromium, "no chromium: `apt-get install chromium` (scripts/setup.sh installs it)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",  # as tests/eval/
             "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",  # test_gallery.py
             "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    dom = subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    ready = re.search(r'data-videos-ready="(\d+)"', dom)
    assert "data-video-error" not in dom and ready and int(ready.group(1)) == len(sources), dom[-2000:]
