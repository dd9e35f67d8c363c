"""The no-transcript boundary measurement (nwt.data.segment_eval) on a short rendered episode."""
import json

import pytest
from conftest import repo_section, synthetic_config

from nwt.data.segment_eval import boundary_error_report
from nwt.data.synthetic.episode import render_episode
from nwt.params import MediaParams, SegmentParams, with_changes

pytest.importorskip("silero_vad")
pytest.importorskip("pocketsphinx")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("segment_eval")
    render_episode("e1", 2, 20.0, out, synthetic_config())
    return out / "e1.mp4", out / "e1.truth.json"


def test_report_scores_both_methods_against_the_truth(rendered):
    cfg = with_changes(repo_section("segment", SegmentParams), backend="pocketsphinx", no_transcript="recognize")
    timing = repo_section("media", MediaParams).timing
    rep = boundary_error_report([rendered], cfg, timing)
    assert set(rep) == {"auto_no_transcript", "vad_only"}
    assert rep["auto_no_transcript"]["method"] == "recognize" and rep["vad_only"]["method"] == "vad"
    truth = json.loads(rendered[1].read_text())
    for name, r in rep.items():
        assert r["clips"] >= 1 and r["boundaries"] >= 1, (name, r)
        # a boundary farther than a typical word (≈0.25 s) from any true word edge would be a bug
        assert 0 <= r["boundary_error_median_ms"] < 150, (name, r)
        assert r["boundary_error_median_ms"] <= r["boundary_error_p90_ms"]
        assert 0 <= r["edges_inside_word"] <= 1
        assert r["clips"] * cfg.min_clip_s <= truth["duration_s"]


def test_report_rejects_bad_input(rendered, tmp_path):
    cfg, timing = repo_section("segment", SegmentParams), repo_section("media", MediaParams).timing
    with pytest.raises(ValueError, match="at least one"):
        boundary_error_report([], cfg, timing)
    truth = json.loads(rendered[1].read_text())
    bad = tmp_path / "e1.truth.json"
    bad.write_text(json.dumps(dict(truth, sentences=[])))
    with pytest.raises(ValueError, match="no sentences"):
        boundary_error_report([(rendered[0], bad)], cfg, timing)


def test_report_with_auto_on_vad_spans_measures_them_once(rendered):
    cfg = with_changes(repo_section("segment", SegmentParams), no_transcript="vad")
    rep = boundary_error_report([rendered], cfg, repo_section("media", MediaParams).timing)
    assert rep["auto_no_transcript"] == rep["vad_only"] and rep["vad_only"]["method"] == "vad"
    assert rep["vad_only"]["clips"] >= 1
