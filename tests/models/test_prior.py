"""FAR prior: shapes, causality, cached == uncached sampling, determinism, rebuild from file."""
import pytest
import torch

from nwt.models.audio_encoder import AudioEncoder
from nwt.models.prior import Prior, PriorDims, sample_logits
from nwt.models.prior_io import load_prior

torch.set_num_threads(1)

TINY = dict(layers=2, dim=32, heads=2, audio_layers=1, audio_window=2, context_frames=5, grid_h=3, grid_w=2,
            code_heads=2, num_codes=16, n_episodes=3, n_mels=8, code_dim=4, spatial_dim=8, mode="far", logit_scale=4.0,
            sync_dim=0, audio_skip=0, style_dim=0, null_audio=False, style_hidden=64, mar_layers=2, mar_dim=64,
            mar_heads=2)


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


@pytest.mark.parametrize("T,audio_skip", [(4, 0), (13, 0), (13, 4)])  # inside and beyond the 5-frame context
def test_cached_greedy_sampling_equals_uncached(T, audio_skip):
    m = tiny(audio_skip=audio_skip).double()
    if audio_skip:  # zero at init: give the direct audio path weights so that it matters
        torch.nn.init.normal_(m.audio_skip[1].weight, std=0.5, generator=torch.Generator().manual_seed(0))
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
    torch.save(dict(dims=m.dims.to_dict(), state_dict=m.state_dict(), episode_ids=["a", "b", "c"],
                    timing=dict(fps=25, sample_rate=16000), fingerprint="x", step=0), path)
    m2, meta = load_prior(path, "cpu")
    assert not m2.training and meta["episode_ids"] == ["a", "b", "c"] and meta["dims"]["layers"] == 2
    codes, mel, ep = data()
    assert torch.equal(m(codes, mel, ep), m2(codes, mel, ep))


def test_stale_checkpoint_layout_says_retrain(tmp_path):
    """A prior.pt from before a layout change (here: no audio stem norm) fails with what to run."""
    m = tiny()
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("audio.stem_norm.")}
    path = tmp_path / "prior.pt"
    torch.save(dict(dims=m.dims.to_dict(), state_dict=state, episode_ids=[], timing={}, fingerprint="x", step=0), path)
    with pytest.raises(RuntimeError, match="dvc repro train_prior"):
        load_prior(path, "cpu")


def test_unknown_mode():  # MAR has its own tests: tests/models/test_prior_mar.py
    with pytest.raises(ValueError):
        PriorDims(**{**TINY, "mode": "bogus"})


def test_style_latent_forward_kl_and_sampling():
    m = tiny(style_dim=3, style_hidden=8)
    codes, mel, ep = data()
    logits, aux = m(codes, mel, ep, return_aux=True)
    kl = aux["kl"]  # eval: z = posterior mean
    assert logits.shape == (2, 7, 3, 2, 2, 16) and kl.shape == (3,) and (kl >= 0).all()
    z0 = m(codes, mel, ep, style=None)
    assert not torch.allclose(logits, z0)  # the posterior's z reaches the logits
    # training: a reparameterised draw, gradients reach the reference encoder
    m.train()
    g = torch.Generator().manual_seed(0)
    logits, aux = m(codes, mel, ep, return_aux=True, generator=g)
    kl = aux["kl"]
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


def test_sync_loss_is_chance_without_a_match_and_trains_the_audio_encoder():
    """The audio–frame contrastive loss starts near log T (within-window negatives) and, on toy
    data whose one changing code is a function of the mel, training on it alone makes the audio
    encoder pick the right frame: loss well below chance."""
    torch.manual_seed(0)
    T = 8
    m = Prior(PriorDims(**{**TINY, "sync_dim": 8}))
    g = torch.Generator().manual_seed(3)

    def batch():
        level = torch.randint(0, 4, (4, T), generator=g)  # (B, T): a "mouth opening" per frame
        mel = (level[..., None, None].float() - 1.5).expand(4, T, 4, 8).reshape(4, 4 * T, 8)
        mel = mel + 0.1 * torch.randn(mel.shape, generator=g)
        codes = torch.zeros(4, T, 3, 2, 2, dtype=torch.long)
        codes[:, :, 2, 1, 0] = level  # the only code that changes, and it follows the audio
        return codes, mel, torch.zeros(4, dtype=torch.long)

    codes, mel, ep = batch()
    m.eval()
    _, aux = m(codes, mel, ep, return_aux=True)
    assert abs(aux["sync"].item() - torch.log(torch.tensor(float(T))).item()) < 0.5
    assert tiny()(codes, mel, ep, return_aux=True)[1]["sync"].item() == 0.0  # sync_dim 0: no term
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(150):
        codes, mel, ep = batch()
        _, aux = m(codes, mel, ep, return_aux=True)
        opt.zero_grad()
        aux["sync"].backward()
        opt.step()
    m.eval()
    codes, mel, ep = batch()
    # 4 levels among 8 frames: frames of equal level are indistinguishable, so the floor is ≈ log 2
    assert m(codes, mel, ep, return_aux=True)[1]["sync"].item() < 1.2


def test_audio_encoder_output_varies_over_time_at_init():
    """The stem norm keeps the convolutions' time-varying output from being swamped by the
    blocks' constant biases (without it the prior learned to ignore the audio): at init, the
    share of the output that varies over time is well above that of the same encoder without it."""
    mel = 0.3 * torch.randn(1, 4 * 50, 8, generator=torch.Generator().manual_seed(0))  # log-mel-like spread

    def time_share(stem_norm: bool) -> float:
        torch.manual_seed(0)
        enc = AudioEncoder(dim=64, layers=2, heads=2, window=4, n_mels=8).eval()
        if not stem_norm:
            enc.stem_norm = torch.nn.Identity()
        with torch.no_grad():
            out = enc(mel)[0]  # (T, D)
        return (out.std(0).mean() / out.std()).item()

    assert time_share(True) > 1.5 * time_share(False)


def test_init_from_codebook_gives_alike_codes_alike_embeddings():
    """Codes whose dVAE values are close start with close input embeddings and output rows."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, 2, 1, 6, generator=g) * 3  # (heads, cluster, 1, d): two looks per head
    values = (centres + 0.1 * torch.randn(2, 2, 8, 6, generator=g)).reshape(2, 16, 6)  # codes 0-7 | 8-15
    m = tiny()
    std_before = m.code_embed.weight.std().item()
    m.init_from_codebook(values)
    for weight in (m.code_embed.weight, m.skip_embed.weight, m.spatial_out.weight):
        w = torch.nn.functional.normalize(weight[:16], dim=-1)  # head 0
        sim = w @ w.T
        within = (sim[:8, :8].mean() + sim[8:, 8:].mean()) / 2
        assert within > sim[:8, 8:].mean() + 0.5
    assert abs(m.code_embed.weight.std().item() - std_before) < 0.2 * std_before  # the init's own spread
    with pytest.raises(ValueError, match="do not match"):
        m.init_from_codebook(torch.randn(2, 8, 6))


@pytest.mark.parametrize("T,guidance", [(4, 3.0), (13, 5.0), (13, 0.0)])  # 0: the unconditional model alone
def test_guided_greedy_sampling_equals_uncached_guidance(T, guidance):
    """Classifier-free guidance: the cached sampler's two rows (with the audio, with the learned
    'no audio' input) compute what two uncached forwards do, and the draw follows
    uncond + guidance × (cond − uncond)."""
    m = tiny(audio_skip=4, null_audio=True).double()
    torch.nn.init.normal_(m.audio_skip[1].weight, std=0.5, generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(m.null_audio, std=1.0, generator=torch.Generator().manual_seed(1))
    _, mel, _ = data(B=1, T=T)
    mel = mel.double()
    codes = m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=guidance)
    ep = torch.tensor([1])
    cond = m(codes[None], mel, ep)
    uncond = m(codes[None], mel, ep, audio_dropout=1.0)  # every window hears nothing
    assert not torch.allclose(cond, uncond)
    assert torch.equal((uncond + guidance * (cond - uncond)).argmax(-1)[0], codes)
    plain = m.sample(mel[0], episode_index=1, top_k=1, seed=0)  # guidance 1 = the conditional model
    assert torch.equal(m(plain[None], mel, ep).argmax(-1)[0], plain)


def test_guidance_and_audio_dropout_need_the_null_audio():
    m = tiny()
    codes, mel, ep = data(B=1, T=4)
    with pytest.raises(ValueError, match="audio_dropout > 0"):
        m.sample(mel[0], 0, guidance=3.0)
    with pytest.raises(ValueError, match="null_audio"):
        m(codes, mel, ep, audio_dropout=0.5)


def test_audio_dropout_silences_windows_but_not_the_sync_loss():
    m = tiny(null_audio=True, sync_dim=8).train()
    codes, mel, ep = data(B=2, T=6)
    def run(p):
        return m(codes, mel, ep, audio_dropout=p, generator=torch.Generator().manual_seed(0), style=None,
                 return_aux=True)

    heard, silent = run(0.0), run(1.0)
    assert not torch.allclose(heard[0], silent[0])
    assert torch.allclose(heard[1]["sync"], silent[1]["sync"])  # paired with what was said, always
    other = mel.roll(3, dims=1)  # silenced windows do not depend on the audio at all
    deaf = m(codes, other, ep, audio_dropout=1.0, generator=torch.Generator().manual_seed(0), style=None)
    assert torch.allclose(deaf, silent[0])


def test_guidance_map_guides_only_its_cells():
    """A guidance map m: cell p draws from uncond + (1 + (g − 1)·m[p]) × (cond − uncond); all-ones
    is the scalar guidance, all-zeros is no guidance (the conditional model)."""
    m = tiny(audio_skip=4, null_audio=True).double()
    torch.nn.init.normal_(m.audio_skip[1].weight, std=0.5, generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(m.null_audio, std=1.0, generator=torch.Generator().manual_seed(1))
    _, mel, _ = data(B=1, T=9)
    mel = mel.double()
    d = m.dims
    ones, zeros = torch.ones(d.grid_h, d.grid_w), torch.zeros(d.grid_h, d.grid_w)
    scalar = m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=5.0)
    assert torch.equal(m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=5.0, guidance_map=ones), scalar)
    plain = m.sample(mel[0], episode_index=1, top_k=1, seed=0)
    assert torch.equal(m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=5.0, guidance_map=zeros), plain)
    half = zeros.clone()
    half[: d.grid_h // 2] = 1.0  # the top rows guided
    codes = m.sample(mel[0], episode_index=1, top_k=1, seed=0, guidance=5.0, guidance_map=half)
    ep = torch.tensor([1])
    cond, uncond = m(codes[None], mel, ep), m(codes[None], mel, ep, audio_dropout=1.0)
    g = (1 + 4.0 * half)[None, None, :, :, None, None]  # (1, 1, H', W', 1, 1)
    assert torch.equal((uncond + g * (cond - uncond)).argmax(-1), codes[None])
    with pytest.raises(ValueError, match="does not match"):
        m.sample(mel[0], 1, guidance=5.0, guidance_map=torch.ones(d.grid_h + 1, d.grid_w))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.sample(mel[0], 1, guidance=5.0, guidance_map=2 * ones)
