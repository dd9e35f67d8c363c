"""evaluate's distribution metrics on rendered presenter clips: `frechet_sync_feat` from the
sync expert's window embeddings (the ones LSE scores), and FID / FVD recorded as not computed
unless their weights are named."""
import cv2
import numpy as np
import pytest
import torch
from presenter_data import evaluate_params, presenter_clips, sync_path  # noqa: F401 (fixtures)

from nwt.constants import Timing
from nwt.eval.distribution import SYNC_FEAT, DistributionMetrics, standard_extractors
from nwt.eval.lipsync import clip_embeddings, load_scorer, lse_scores

torch.set_num_threads(1)
TIMING = Timing(25, 16000)


def sources(frames):
    """gt; a 'reconstruction' (blurred, as a blurry dVAE gives); a 'generation' whose mouth never
    moves (the first frame held)."""
    recon = np.stack([cv2.GaussianBlur(f, (5, 5), 1.2) for f in frames])
    frozen = np.repeat(frames[:1], len(frames), axis=0)
    return {"gt": frames, "recon": recon, "gen": frozen}


@pytest.fixture(scope="module")
def sync_features(presenter_clips, sync_path):
    scorer, timing = load_scorer(sync_path)
    dist = DistributionMetrics({"fid": None, "fvd": None})
    first = None
    for frames, audio in presenter_clips:
        for source, video in sources(frames).items():
            scores = lse_scores(scorer, video, audio, timing)
            dist.add(SYNC_FEAT, source, scores["video_emb"])
            first = first or (scorer, video, audio, scores)
    return dist, first


def test_lse_keeps_the_video_embeddings_of_the_windows_it_scores(sync_features):
    _, (scorer, frames, audio, scores) = sync_features
    assert scores["video_emb"].shape == (scores["windows"], 16) == (len(frames) - 5, 16)
    video, _ = clip_embeddings(scorer, frames, audio, TIMING, scores["windows"])
    np.testing.assert_allclose(scores["video_emb"], video.numpy(), atol=1e-6)
    assert np.allclose(np.linalg.norm(scores["video_emb"], axis=1), 1.0, atol=1e-5)  # unit-norm embeddings


def test_frechet_sync_feat_orders_the_sources(sync_features):
    dist, _ = sync_features
    per_source, extra = dist.metrics()
    floor, recon, gen = (per_source[s][SYNC_FEAT] for s in ("gt", "recon", "gen"))
    assert all(np.isfinite(v) and v >= 0 for v in (floor, recon, gen))
    # a mouth that never moves is far from the real windows; a blurred one stays near the floor
    assert gen > 3 * floor and gen > 2 * recon and recon < 1.5 * floor, per_source
    assert extra["frechet_samples"][SYNC_FEAT] == 6 * 45  # 6 clips × (50 − 5) windows
    assert "frechet_sync_feat_note" not in extra


def test_fid_fvd_not_named_are_null_with_a_note(sync_features):
    per_source, extra = sync_features[0].metrics()
    for s in ("gt", "recon", "gen"):
        assert per_source[s]["fid"] is None and per_source[s]["fvd"] is None
    assert extra["fid_note"] == "not computed: evaluate.fid_weights is empty"
    assert extra["fvd_note"] == "not computed: evaluate.fvd_weights is empty"
    assert set(extra["frechet_samples"]) == {SYNC_FEAT}


def test_one_clip_has_no_halves(presenter_clips, sync_path):
    scorer, timing = load_scorer(sync_path)
    dist = DistributionMetrics({})
    frames, audio = presenter_clips[0]
    for source in ("gt", "recon", "gen"):
        dist.add(SYNC_FEAT, source, lse_scores(scorer, frames, audio, timing)["video_emb"])
    per_source, extra = dist.metrics()
    assert per_source["gen"][SYNC_FEAT] is None
    assert extra["frechet_sync_feat_note"].startswith("not computed: need features from at least 2 clips")


def test_standard_extractors_follow_the_params(tmp_path):
    assert standard_extractors(evaluate_params()) == {"fid": None, "fvd": None}
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth.*evaluate.fid_weights"):
        standard_extractors(evaluate_params(fid_weights=str(tmp_path / "missing.pth")))
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt.*evaluate.fvd_weights"):
        standard_extractors(evaluate_params(fvd_weights=str(tmp_path / "missing.pt")))
