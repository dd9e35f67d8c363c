"""MAR prior (mode "mar"): causal inside a frame, KV-cached sampling equals uncached, same seed →
same codes, streaming, it learns what FAR cannot (codes that depend on each other inside a
frame), and FAR's checkpoint layout is untouched."""
import functools
import math

import pytest
import torch

from nwt.models.prior import Prior, PriorDims, sample_logits
from nwt.models.prior_io import load_prior

torch.set_num_threads(1)

GRID = (3, 2, 2)  # H', W', heads → 12 codes per frame
TINY = dict(layers=2, dim=32, heads=2, audio_layers=1, audio_window=2, context_frames=5, grid_h=3, grid_w=2,
            code_heads=2, num_codes=16, n_episodes=3, n_mels=8, code_dim=4, spatial_dim=8,
            mode="mar", mar_layers=2, mar_dim=16, mar_heads=2, logit_scale=4.0, sync_dim=0, audio_skip=0, style_dim=0,
            null_audio=False, style_hidden=64)


def tiny(**kw) -> Prior:
    torch.manual_seed(0)
    return Prior(PriorDims(**{**TINY, **kw})).eval()


def data(B=2, T=7, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (B, T, *GRID), generator=g)
    mel = torch.randn(B, 4 * T, 8, generator=g).to(dtype)
    return codes, mel, torch.tensor([0, 3])[:B]


def test_shapes_loss_and_training_options():
    m = tiny()
    codes, mel, ep = data()
    logits = m(codes, mel, ep)
    assert logits.shape == (2, 7, *GRID, 16)
    assert torch.isfinite(m.loss(logits, codes))
    m.train()
    out = m(codes, mel, ep, prev_frame_dropout=0.5, code_noise=0.2, episode_dropout=0.5,
            generator=torch.Generator().manual_seed(0))
    assert out.shape == logits.shape
    with pytest.raises(ValueError, match="mar_dim"):
        PriorDims(**{**TINY, "mar_dim": 18, "mar_heads": 2})  # head size 9: RoPE needs an even one


def test_causal_inside_and_across_frames():
    """Changing code j of frame t leaves the logits of codes ≤ j of frame t and of all earlier
    frames unchanged; it reaches the later codes of frame t and frame t+1."""
    m = tiny(context_frames=50).double()
    codes, mel, ep = data(T=6, dtype=torch.float64)
    base = m(codes, mel, ep).flatten(2, 4)  # (B, T, N, K), raster order
    N = base.shape[2]
    for t, j in ((0, 0), (2, 5), (3, N - 1)):
        changed = codes.flatten(2).clone()
        changed[:, t, j] = (changed[:, t, j] + 1) % 16
        out = m(changed.view_as(codes), mel, ep).flatten(2, 4)
        assert torch.equal(out[:, :t], base[:, :t]), (t, j)
        assert torch.allclose(out[:, t, : j + 1], base[:, t, : j + 1], atol=1e-12), (t, j)
        if j + 1 < N:
            assert not torch.allclose(out[:, t, j + 1], base[:, t, j + 1]), (t, j)
        assert not torch.allclose(out[:, t + 1], base[:, t + 1]), (t, j)


def draw_with(gen: torch.Generator, kw: dict, logits: torch.Tensor) -> torch.Tensor:
    return sample_logits(logits, kw.get("temperature"), kw.get("top_k", 0), kw.get("top_p", 1.0), gen)


@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.7, top_k=5, top_p=0.9)])
def test_kv_cached_sampling_equals_uncached(kw):
    """The head's token-by-token sampler: with its KV cache and recomputing the prefix at every
    step draw the same codes from the same seed."""
    head = tiny().double().mar
    g = torch.Generator().manual_seed(0)
    h, skip = torch.randn(1, 32, generator=g).double(), torch.randn(1, 12, 16, generator=g).double()
    draws = []
    for use_cache in (True, False):
        gen = torch.Generator().manual_seed(5)
        draws.append(head.sample(h, skip, functools.partial(draw_with, gen, kw), use_cache=use_cache))
    assert draws[0].shape == GRID and draws[0].dtype == torch.long
    assert torch.equal(draws[0], draws[1])


@pytest.mark.parametrize("T", [4, 9])  # inside and beyond the 5-frame context window
def test_greedy_sampling_equals_teacher_forced_argmax(T):
    """Frame and code caches together compute what the uncached teacher-forced forward does."""
    m = tiny().double()
    _, mel, _ = data(B=1, T=T, dtype=torch.float64)
    codes = m.sample(mel[0], episode_index=1, top_k=1, seed=0)
    assert codes.shape == (T, *GRID) and codes.dtype == torch.long
    assert torch.equal(m(codes[None], mel, torch.tensor([1])).argmax(-1)[0], codes)


def test_same_seed_same_codes_and_streaming():
    m = tiny()
    _, mel, _ = data(B=1, T=12)
    a = m.sample(mel[0], 0, temperature=1.0, seed=3, audio_chunk_frames=5)
    assert torch.equal(a, m.sample(mel[0], 0, temperature=1.0, seed=3))
    assert not torch.equal(a, m.sample(mel[0], 0, temperature=1.0, seed=4))
    frames = list(m.sample_iter(lambda lo, hi: mel[0, 4 * lo : 4 * hi], 12, 0, temperature=1.0, seed=3,
                                audio_chunk_frames=5))
    assert torch.equal(torch.stack(frames), a)
    d = m.sample(mel[0], None, temperature=0.8, top_k=4, top_p=0.9, seed=3)
    assert d.shape == a.shape and int(d.max()) < 16


def test_style_latent_reaches_mar_codes():
    m = tiny(style_dim=3, style_hidden=8).double()
    _, mel, _ = data(B=1, T=6, dtype=torch.float64)
    z = m.style_from_seed(1)
    s = m.sample(mel[0], 1, top_k=1, seed=0, style=z)
    assert torch.equal(m(s[None], mel, torch.tensor([1]), style=z).argmax(-1)[0], s)


def test_learns_codes_that_depend_on_each_other_inside_a_frame():
    """Every code of a frame equals one symbol drawn at random per frame, independent of the
    audio and of the previous frame (fresh data every step, nothing to memorise): given the
    frame state alone each code costs log2(16) = 4 bits, so FAR stays near 4 bits/code; MAR
    pays the bits once per frame (ideally 4/12 bits/code)."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(60):
        sym = torch.randint(0, 16, (8, 4, 1, 1, 1), generator=g)
        batches.append((sym.expand(8, 4, *GRID).contiguous(), torch.randn(8, 16, 8, generator=g)))
    ep = torch.zeros(8, dtype=torch.long)
    bits = {}
    for mode in ("far", "mar"):
        m = tiny(mode=mode).train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        losses = []
        for codes, mel in batches:
            loss = m.loss(m(codes, mel, ep), codes)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item() / math.log(2))
        bits[mode] = sum(losses[-10:]) / 10
        if mode == "mar":
            assert bits[mode] < 0.5 * losses[0]  # the loss drops within a few steps
    assert bits["far"] > 3.5 and bits["mar"] < 2.0, bits

def test_checkpoint_layouts(tmp_path):
    """FAR keeps its parameter names (old prior.pt files load); MAR has its head instead of the
    spatial head; a MAR prior rebuilds from the file alone (dims saved with the mode)."""
    far = {k.split(".")[0] for k in tiny(mode="far").state_dict()}
    mar = {k.split(".")[0] for k in tiny().state_dict()}
    spatial = {"spatial_in", "spatial_pos", "skip_embed", "spatial_mlp", "spatial_norm", "spatial_out"}
    assert spatial <= far and "mar" not in far
    assert not spatial & mar and mar - far == {"mar"} and far - mar == spatial
    m = tiny()
    path = tmp_path / "prior.pt"
    torch.save(dict(dims=m.dims.to_dict(), state_dict=m.state_dict(), episode_ids=["a", "b", "c"],
                    timing=dict(fps=25, sample_rate=16000), fingerprint="x", step=0), path)
    m2, meta = load_prior(path, "cpu")
    assert m2.dims.mode == "mar" and meta["dims"]["mar_dim"] == 16
    codes, mel, ep = data()
    assert torch.equal(m(codes, mel, ep), m2(codes, mel, ep))
    # a FAR prior.pt written before the MAR fields existed still loads (migrate_prior_dims: 2 × 64 × 2)
    f = tiny(mode="far", mar_layers=2, mar_dim=64, mar_heads=2)
    old_dims = {k: v for k, v in f.dims.to_dict().items() if not k.startswith("mar_")}
    torch.save(dict(dims=old_dims, state_dict=f.state_dict(), episode_ids=[], timing={}, fingerprint="y", step=0), path)
    f2, _ = load_prior(path, "cpu")
    assert f2.dims == f.dims
    assert torch.equal(f(codes, mel, ep), f2(codes, mel, ep))


def test_guided_greedy_sampling_equals_teacher_forced_guidance():
    """Guidance in MAR: both rows (with the audio, with the learned 'no audio') share each drawn
    code inside the frame, and the draw follows uncond + guidance × (cond − uncond)."""
    m = tiny(null_audio=True).double()
    torch.nn.init.normal_(m.null_audio, std=1.0, generator=torch.Generator().manual_seed(1))
    _, mel, _ = data(B=1, T=6, dtype=torch.float64)
    codes = m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=4.0)
    ep = torch.tensor([1])
    cond, uncond = m(codes[None], mel, ep), m(codes[None], mel, ep, audio_dropout=1.0)
    assert not torch.allclose(cond, uncond)
    assert torch.equal((uncond + 4.0 * (cond - uncond)).argmax(-1)[0], codes)


def test_guidance_map_in_mar_follows_the_raster_order():
    """MAR draws a frame token by token: the map's cell of each token sets its guidance."""
    m = tiny(null_audio=True).double()
    torch.nn.init.normal_(m.null_audio, std=1.0, generator=torch.Generator().manual_seed(1))
    _, mel, _ = data(B=1, T=6, dtype=torch.float64)
    d = m.dims
    cells = torch.zeros(d.grid_h, d.grid_w)
    cells[:, : d.grid_w // 2] = 1.0  # the left columns guided
    codes = m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=4.0, guidance_map=cells)
    ep = torch.tensor([1])
    cond, uncond = m(codes[None], mel, ep), m(codes[None], mel, ep, audio_dropout=1.0)
    g = (1 + 3.0 * cells)[None, None, :, :, None, None]
    assert torch.equal((uncond + g * (cond - uncond)).argmax(-1)[0], codes)
    assert not torch.equal(codes, m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=4.0))
