"""reports/index.html: test clips as ground truth | reconstruction | generation, with sound, and
the metric table — a page that opens from disk in a browser.

The page records, in `data-` attributes of <body>, how many videos reached readyState ≥ 2 with
a non-zero duration, so a headless browser (`--dump-dom`) can check it without a driver.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from nwt.atomic import atomic_path

SOURCES = ("gt", "recon", "gen")
SOURCE_NAMES = {"gt": "ground truth", "recon": "dVAE reconstruction", "gen": "generated from the audio"}

_CHECK_SCRIPT = """
<script>
(function () {
  const videos = Array.from(document.querySelectorAll('video'));
  const ready = new Set();
  function mark() {
    document.body.dataset.videosTotal = String(videos.length);
    document.body.dataset.videosReady = String(ready.size);
  }
  videos.forEach(function (v, i) {
    function check() { if (v.readyState >= 2 && v.duration > 0) { ready.add(i); mark(); } }
    v.addEventListener('loadeddata', check);
    v.addEventListener('canplay', check);
    v.addEventListener('error', function () { document.body.dataset.videoError = v.currentSrc || 'unknown'; });
    v.load();
    check();
  });
  mark();
})();
</script>
"""


def metric_rows(metrics: dict) -> list[tuple[str, list[str]]]:
    """Metrics measured per source (gt/recon/gen) side by side; the rest as single values, nested
    blocks under their dotted names (as DVC shows them: voices.unseen.lse_c)."""
    per_source = sorted({k for s in SOURCES for k in metrics.get(s, {})})
    rows = [(k, [_fmt(metrics.get(s, {}).get(k)) for s in SOURCES]) for k in per_source]
    return rows + [(key, [_fmt(value), "", ""]) for key, value in _flat(
        {k: v for k, v in metrics.items() if k not in SOURCES})]


def _flat(block: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in sorted(block.items()):
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_gallery(path: str | Path, samples: list[dict], metrics: dict, title: str = "nwt evaluation",
                  images: Sequence[dict] = ()) -> None:
    """samples: [{"key", "video" (path relative to the page), "caption"}]; images (shown after
    them): [{"src" (path relative to the page), "caption"}]."""
    path = Path(path)
    table = "\n".join(
        "<tr><th>{}</th>{}</tr>".format(html.escape(name), "".join(f"<td>{html.escape(v)}</td>" for v in values))
        for name, values in metric_rows(metrics))
    cards = "\n".join(
        f"""<figure><video controls preload="auto" src="{html.escape(s['video'])}"></video>
<figcaption>{html.escape(s['key'])}: {html.escape(s.get('caption', ''))}</figcaption></figure>"""
        for s in samples)
    cards += "".join(
        f"""\n<figure><img src="{html.escape(i['src'])}" alt="{html.escape(i.get('caption', ''))}">
<figcaption>{html.escape(i.get('caption', ''))}</figcaption></figure>"""
        for i in images)
    head = "".join(f"<th>{html.escape(SOURCE_NAMES[s])}</th>" for s in SOURCES)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }}
th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Each video: {" | ".join(SOURCE_NAMES[s] for s in SOURCES)}, with the test clip's audio.
Generated frames carry a visible "SYNTHETIC" mark.</p>
<h2>Metrics (test split)</h2>
<table id="metrics"><thead><tr><th>metric</th>{head}</tr></thead><tbody>
{table}
</tbody></table>
<h2>Samples</h2>
{cards}
{_CHECK_SCRIPT}
</body></html>
"""
    with atomic_path(path) as tmp:
        tmp.write_text(page)
