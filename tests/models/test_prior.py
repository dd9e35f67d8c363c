"""FAR prior: shapes, causality, cached == uncached sampling, determinism, rebuild from file."""
from dataclasses import asdict

import pytest
import torch

from nwt.models.audio_encoder import AudioEncoder
from nwt.models.prior import Prior, PriorDims, sample_logits
from nwt.models.prior_io import load_prior

torch.set_num_threads(1)

TINY = dict(layers=2, dim=32, heads=2, audio_layers=1, audio_window=2, context_frames=5, grid_h=3, grid_w=2,
            code_heads=2, num_codes=16, n_episodes=3, n_mels=8, code_dim=4, spatial_dim=8)


def tiny(**kw) -> Prior:
    torch.manual_seed(0)
    return Prior(PriorDims(**{**TINY, **kw})).eval()


def data(B=2, T=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (B, T, 3, 2, 2), generator=g)
    mel = torch.randn(B, 4 * T, 8, generator=g)
    return codes, mel, torch.tensor([0, 3])[:B]


def test_shapes_and_loss():
    m = tiny()
    codes, mel, ep = data()
    logits = m(codes, mel, ep)
    assert logits.shape == (2, 7, 3, 2, 2, 16)
    loss = m.loss(logits, codes)
    assert loss.ndim == 0 and torch.isfinite(loss)
    m.train()
    g = torch.Generator().manual_seed(0)
    out = m(codes, mel, ep, prev_frame_dropout=0.5, code_noise=0.2, episode_dropout=0.5, generator=g)
    assert out.shape == logits.shape


def test_causal_in_frames():
    m = tiny(context_frames=50)
    codes, mel, ep = data(T=8)
    base = m(codes, mel, ep)
    for t in (0, 3, 7):
        changed = codes.clone()
        changed[:, t] = (changed[:, t] + 1) % 16
        out = m(changed, mel, ep)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6), t  # frame t's codes feed step t+1
        if t + 1 < 8:
            assert not torch.allclose(out[:, t + 1], base[:, t + 1])


def test_audio_chunked_equals_full():
    torch.manual_seed(0)
    enc = AudioEncoder(dim=16, layers=2, heads=2, window=3, n_mels=8).double().eval()
    mel = torch.randn(1, 4 * 40, 8, dtype=torch.float64)
    assert torch.allclose(enc.encode_chunked(mel, chunk_frames=7), enc(mel), atol=1e-9)


@pytest.mark.parametrize("T", [4, 13])  # inside and beyond the 5-frame context window
def test_cached_greedy_sampling_equals_uncached(T):
    m = tiny().double()
    _, mel, _ = data(B=1, T=T)
    codes = m.sample(mel[0].double(), episode_index=1, top_k=1, seed=0)
    assert codes.shape == (T, 3, 2, 2) and codes.dtype == torch.long
    logits = m(codes[None], mel.double(), torch.tensor([1]))
    assert torch.equal(logits.argmax(-1)[0], codes)
    # a different context window is a different (but still consistent) model
    codes3 = m.sample(mel[0].double(), episode_index=1, top_k=1, seed=0, context_frames=3)
    assert torch.equal(m(codes3[None], mel.double(), torch.tensor([1]), context_frames=3).argmax(-1)[0], codes3)


def test_sampling_deterministic_per_seed():
    m = tiny()
    _, mel, _ = data(B=1, T=6)
    a = m.sample(mel[0], 0, temperature=1.0, seed=3)
    b = m.sample(mel[0], 0, temperature=1.0, seed=3)
    c = m.sample(mel[0], 0, temperature=1.0, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = m.sample(mel[0], None, temperature=0.8, top_k=4, top_p=0.9, seed=3)
    assert d.shape == a.shape and int(d.max()) < 16


def test_sample_logits_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 16)
    assert torch.equal(sample_logits(logits, 1.0, 1, 1.0, g), logits.argmax(-1))
    assert torch.equal(sample_logits(logits, 1.0, 0, 1e-6, g), logits.argmax(-1))
    top3 = logits.topk(3, -1).indices
    s = sample_logits(logits, 1.0, 3, 1.0, g)
    assert (top3 == s[:, None]).any(-1).all()


def test_episode_rows():
    m = tiny()
    assert m.episode_row(None) == 3 and m.episode_row(7) == 3 and m.episode_row(-1) == 3 and m.episode_row(2) == 2


def test_rebuild_from_file_weights_only(tmp_path):
    m = tiny()
    path = tmp_path / "prior.pt"
    torch.save(dict(dims=asdict(m.dims), state_dict=m.state_dict(), episode_ids=["a", "b", "c"],
                    timing=dict(fps=25, sample_rate=16000), fingerprint="x", step=0), path)
    m2, meta = load_prior(path, "cpu")
    assert not m2.training and meta["episode_ids"] == ["a", "b", "c"] and meta["dims"]["layers"] == 2
    codes, mel, ep = data()
    assert torch.equal(m(codes, mel, ep), m2(codes, mel, ep))


def test_unknown_mode():  # MAR has its own tests: tests/models/test_prior_mar.py
    with pytest.raises(ValueError):
        PriorDims(mode="bogus")


def test_style_latent_forward_kl_and_sampling():
    m = tiny(style_dim=3, style_hidden=8)
    codes, mel, ep = data()
    logits, kl = m(codes, mel, ep, return_kl=True)  # eval: z = posterior mean
    assert logits.shape == (2, 7, 3, 2, 2, 16) and kl.shape == (3,) and (kl >= 0).all()
    z0 = m(codes, mel, ep, style=None)
    assert not torch.allclose(logits, z0)  # the posterior's z reaches the logits
    # training: a reparameterised draw, gradients reach the reference encoder
    m.train()
    g = torch.Generator().manual_seed(0)
    logits, kl = m(codes, mel, ep, return_kl=True, generator=g)
    (m.loss(logits, codes) + kl.sum()).backward()
    assert m.style_encoder.frame.weight.grad.abs().sum() > 0 and m.style_proj.weight.grad.abs().sum() > 0
    m.eval()
    # cached greedy sampling with a given z equals the uncached forward with that z
    z = m.style_from_seed(4)
    assert z.shape == (3,) and torch.equal(z, m.style_from_seed(4))
    _, mel1, _ = data(B=1, T=9)
    s = m.sample(mel1[0], 1, top_k=1, seed=0, style=z)
    assert torch.equal(m(s[None], mel1, torch.tensor([1]), style=z).argmax(-1)[0], s)
    assert m.encode_style(codes[0]).shape == (3,)
    assert tiny().dims.style_dim == 0
    with pytest.raises(ValueError, match="style"):
        tiny().encode_style(codes[0])


def test_sample_iter_streams_what_sample_collects():
    m = tiny()
    _, mel, _ = data(B=1, T=30)
    whole = m.sample(mel[0], 0, temperature=1.0, seed=2, audio_chunk_frames=7)
    calls = []

    def mel_fn(lo, hi):
        calls.append((lo, hi))
        return mel[0, 4 * lo : 4 * hi]

    frames = list(m.sample_iter(mel_fn, 30, 0, temperature=1.0, seed=2, audio_chunk_frames=7))
    assert torch.equal(torch.stack(frames), whole)
    assert max(hi - lo for lo, hi in calls) <= 7 + 2 * m.audio.receptive_frames()  # mel read a chunk at a time
    # chunking the audio encoder changes nothing (it has a finite receptive field)
    assert torch.equal(m.sample(mel[0], 0, temperature=1.0, seed=2, audio_chunk_frames=1000), whole)
