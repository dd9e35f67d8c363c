"""The gallery page in headless Chromium (apt `chromium`, installed by scripts/setup.sh): the
metric table renders and every video reaches readyState ≥ 2 with a non-zero duration."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from nwt.data.media import write_video
from nwt.eval.gallery import metric_rows, write_gallery

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
                  "--virtual-time-budget=20000"]
METRICS = {"gt": {"lse_c": 1.5, "mouth_audio_corr": 0.7}, "gen": {"lse_c": 1.2, "mouth_audio_corr": 0.5},
           "recon": {"lse_c": 1.4, "psnr_db": 30.1}, "gen_vs_gt": {"lse_c_ratio": 0.8}, "rtf": 2.5}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no chromium: `apt-get install chromium` (scripts/setup.sh installs it)")


def test_metric_rows_put_sources_side_by_side():
    rows = dict(metric_rows(METRICS))
    assert rows["lse_c"] == ["1.5", "1.4", "1.2"]
    assert rows["psnr_db"] == ["—", "30.1", "—"]
    assert rows["gen_vs_gt.lse_c_ratio"][0] == "0.8" and rows["rtf"][0] == "2.5"


def test_gallery_plays_in_headless_chromium(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        frames = np.repeat(rng.integers(0, 255, (1, 256, 672, 3), dtype=np.uint8), 25, axis=0)
        audio = (0.2 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
        write_video(tmp_path / "evaluate" / "samples" / f"clip{i}.webm", frames, 25, audio, 16000)
        samples.append(dict(key=f"clip{i}", video=f"evaluate/samples/clip{i}.webm", caption="test"))
    page = tmp_path / "index.html"
    write_gallery(page, samples, METRICS)
    proc = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert '<table id="metrics">' in dom and "<td>1.5</td>" in dom, proc.stderr[-2000:]
    total = re.search(r'data-videos-total="(\d+)"', dom)
    ready = re.search(r'data-videos-ready="(\d+)"', dom)
    assert total and int(total.group(1)) == 2, dom[-2000:]
    assert "data-video-error" not in dom, dom[-2000:]
    assert ready and int(ready.group(1)) == 2, dom[-2000:]


def test_nested_metrics_get_dotted_rows_and_images_show(tmp_path):
    metrics = dict(METRICS, voices={"unseen": {"lse_c": 0.4, "per_voice": {"f4": {"lse_c": 0.35}}}, "real": {}})
    rows = dict(metric_rows(metrics))
    assert rows["voices.unseen.lse_c"] == ["0.4", "", ""] and rows["voices.unseen.per_voice.f4.lse_c"][0] == "0.35"
    assert rows["gen_vs_gt.lse_c_ratio"][0] == "0.8" and "voices.real" not in rows
    page = tmp_path / "index.html"
    write_gallery(page, [], metrics, images=[dict(src="evaluate/contact_sheet_real_vs_own.png", caption="real | own")])
    text = page.read_text()
    assert '<img src="evaluate/contact_sheet_real_vs_own.png" alt="real | own">' in text
    assert "<th>voices.unseen.per_voice.f4.lse_c</th><td>0.35</td>" in text
