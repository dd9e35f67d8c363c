"""LSE-D / LSE-C as syncnet_python defines them, and scoring with the official weights' network
(its MFCC front end and face crops: tests/models/test_syncnet.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nwt.constants import Timing
from nwt.eval.lipsync import calc_pdist, clip_embeddings, load_scorer, lse_from_embeddings, lse_scores, shifted_lse
from nwt.models.syncnet import SyncNetS, load_official_syncnet

torch.set_num_threads(1)
TIMING = Timing(25, 16000)
SPF = TIMING.samples_per_frame


class FakeScorer:
    """Embeddings chosen so that video window i matches audio window i − k exactly:
    v_i = e_i, a_m = e_{m+k} (one-hot). The frame index is read from pixel [t, 0, 0, 0]; the
    audio samples hold their feature-row number, so cut audio keeps its identity."""

    window, mels_per_frame = 5, 4

    def __init__(self, k: int, dim: int = 256):
        self.k, self.dim = k, dim

    def frames_to_input(self, frames):
        return torch.as_tensor(frames[:, 0, 0, 0].astype(np.int64))  # (T,) frame index

    def audio_to_input(self, audio, timing):
        return torch.as_tensor(np.asarray(audio)[:: timing.mel_hop].copy())[:, None]  # (A, 1) row number

    def forward_video(self, x):  # (N, 5)
        return F.one_hot(x[:, 0] + 20, self.dim).float()

    def forward_audio(self, x):  # (N, 20, 1)
        return F.one_hot((x[:, 0, 0] / 4).long() + self.k + 20, self.dim).float()


def fake_clip(T: int):
    frames = np.zeros((T, 8, 8, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(T)
    return frames, np.repeat(np.arange(4 * T), TIMING.mel_hop).astype(np.float32)  # sample → row number


def expected_mdist(n: int, k: int, vshift: int = 15) -> np.ndarray:
    """Column for AV offset o: window i meets audio window i − o; outside the clip the zero
    padding is at distance 1, a match at 0, any other one-hot at √2."""
    out = []
    for o in range(vshift, -vshift - 1, -1):
        d = [1.0 if not 0 <= i - o < n else (0.0 if o == k else np.sqrt(2)) for i in range(n)]
        out.append(np.mean(d))
    return np.array(out)


@pytest.mark.parametrize("k", [0, 3, -7])
def test_lse_on_a_hand_made_distance_pattern(k):
    T = 40
    frames, audio = fake_clip(T)
    res = lse_scores(FakeScorer(k), frames, audio, TIMING)
    n = T - 5  # syncnet_python scores windows 0 … min_length − 6
    assert res["windows"] == n
    want = expected_mdist(n, k)
    np.testing.assert_allclose(res["dists"], want, atol=1e-4)
    assert res["av_offset_frames"] == k
    assert res["lse_d"] == pytest.approx(abs(k) / n, abs=1e-4)  # the minimum of the mean distances
    assert res["lse_c"] == pytest.approx(np.median(want) - want.min(), abs=1e-4)  # median − min
    assert list(res["offsets"][:2]) == [15, 14] and res["offsets"][np.argmin(res["dists"])] == k


def test_min_length_uses_the_shorter_stream():
    frames, audio = fake_clip(40)
    res = lse_scores(FakeScorer(0), frames, audio[: 30 * SPF + 100], TIMING)  # audio: 30 whole frames
    assert res["windows"] == 25
    with pytest.raises(ValueError, match="too short"):
        lse_scores(FakeScorer(0), frames[:5], audio, TIMING)


def test_calc_pdist_matches_the_original_loop():
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g)
    vshift = 4
    f2p = F.pad(f2, (0, 0, vshift, vshift))
    ref = torch.stack([F.pairwise_distance(f1[[i], :].repeat(2 * vshift + 1, 1), f2p[i : i + 2 * vshift + 1, :])
                       for i in range(len(f1))])
    torch.testing.assert_close(calc_pdist(f1, f2, vshift), ref)
    res = lse_from_embeddings(f1, f2, vshift)
    mdist = ref.mean(0)
    assert res["lse_d"] == pytest.approx(float(mdist.min()))
    assert res["lse_c"] == pytest.approx(float(torch.median(mdist) - mdist.min()))
    assert res["av_offset_frames"] == vshift - int(mdist.argmin())


@pytest.mark.parametrize("k", [4, -6])
def test_shifted_lse_equals_scoring_the_cut_clip(k):
    T = 50
    frames, audio = fake_clip(T)
    scorer = FakeScorer(0)
    v, a = clip_embeddings(scorer, frames, audio, TIMING)
    assert v.shape[0] == T - 4  # every full window
    fast = shifted_lse(v, a, k)
    # audio advanced by k: video frame i plays with the audio of frame i + k
    if k > 0:
        cut_frames, cut_audio = frames[: T - k], audio[k * SPF :]
    else:
        cut_frames, cut_audio = frames[-k:], audio[: (T + k) * SPF]
    slow = lse_scores(scorer, cut_frames, cut_audio, TIMING)
    assert fast["av_offset_frames"] == slow["av_offset_frames"] == k
    np.testing.assert_allclose(fast["dists"], slow["dists"], atol=1e-6)


def test_official_syncnet_loads_saved_state_dict_and_scores(tmp_path):
    torch.manual_seed(0)
    net = SyncNetS()
    # a file as old torch wrote it: the S state dict without BatchNorm's num_batches_tracked
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    with pytest.raises(ValueError, match="face_scale and centre_shift"):
        load_scorer(path, face_scale=2.0)
    model, timing = load_scorer(path, face_scale=2.0, centre_shift=0.19)
    assert (timing.fps, timing.sample_rate) == (25, 16000) and (model.face_scale, model.centre_shift) == (2.0, 0.19)
    for k, v in state.items():
        torch.testing.assert_close(model.net.state_dict()[k], v)
    rng = np.random.default_rng(1)
    T = 7  # two windows
    frames = rng.integers(0, 256, (T, 256, 224, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, T * SPF).astype(np.float32)
    with torch.no_grad():
        res = lse_scores(model, frames, audio, timing, batch_size=2)
    assert res["windows"] == 2 and res["dists"].shape == (31,)
    assert np.isfinite(res["lse_d"]) and res["lse_c"] >= 0 and -15 <= res["av_offset_frames"] <= 15


def test_official_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="syncnet_v2.model"):
        load_official_syncnet(tmp_path / "missing.model", 2.0, 0.19)
    bad = tmp_path / "bad.model"
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_official_syncnet(bad, 2.0, 0.19)
    other = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="neither"):
        load_scorer(other)
