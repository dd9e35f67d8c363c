"""The learning-failure rules (nwt.train.learning_warnings) on the figures they were tuned on: the
default corpus's committed reports give none, the small real corpus of issue 20 gives some."""
import json
import logging

from conftest import REPO

from nwt.train.learning_warnings import dvae_warnings, prior_warnings, report, sync_warnings


def committed(stage: str) -> dict:
    return json.loads((REPO / "reports" / stage / "metrics.json").read_text())


def test_default_corpus_gives_no_warning():
    sync = committed("train_sync")
    assert sync_warnings(sync["train"]["accuracy"], sync["val"]["accuracy"]) == []
    val = committed("train_prior")["val"]
    assert prior_warnings(val["nll_bits_per_code"], val["unigram_entropy_bits"],
                          val["nll_shuffled_audio_bits_per_code"]) == []
    dvae = committed("train_dvae")
    # mean-frame and train PSNR measured on the same run's models and shards (/work/baseline, 2026-12)
    val_psnr = dvae["val"]["psnr_db"]
    assert dvae_warnings(val_psnr, dvae["val"].get("mean_frame_psnr_db", 28.484),
                         dvae["train"].get("psnr_db", 28.112)) == []


def test_small_real_corpus_warns_about_sync_and_prior():
    # issue 20's three real episodes: sync at chance after 0.97 on train; prior near the unigram, 0.4 % audio gain
    sync = sync_warnings(0.97, 0.50)
    assert len(sync) == 2 and "chance" in sync[0] and "memorised" in sync[1]
    prior = prior_warnings(5.38, 6.62, 5.38 * 1.004)
    assert len(prior) == 1 and "audio" in prior[0]
    assert len(prior_warnings(6.2, 6.62, 6.3)) == 1  # 0.94 of the unigram entropy, 1.6 % audio gain


def test_dvae_rules():
    assert dvae_warnings(24.0, 22.0, 25.0) == []
    still = dvae_warnings(20.0, 28.5, 20.5)
    assert len(still) == 1 and "still picture" in still[0]
    memorised = dvae_warnings(24.0, 20.0, 30.0)
    assert len(memorised) == 1 and "memorised" in memorised[0]


def test_missing_figures_say_the_check_did_not_run():
    for got in (sync_warnings(0.9, None), prior_warnings(float("nan"), 6.0, 6.0), dvae_warnings(None, None, 30.0)):
        assert len(got) == 1 and "not checked" in got[0]
    assert sync_warnings(None, 0.9) == []  # no train figure: only the memorisation check is skipped
    assert dvae_warnings(25.0, None, None) == []


def test_report_logs_each_warning(caplog):
    with caplog.at_level(logging.WARNING):
        out = report("train_sync", ["a", "b"])
    assert out == ["a", "b"]
    assert [r.getMessage() for r in caplog.records] == ["train_sync: a", "train_sync: b"]
