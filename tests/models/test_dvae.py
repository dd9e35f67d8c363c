import numpy as np
import pytest
import torch

from nwt.models.discriminator import MultiScaleDiscriminator, d_hinge_loss, feature_matching_loss, g_hinge_loss
from nwt.models.dvae import DVAE, DVAEDims
from nwt.models.dvae_io import decode_codes, encode_frames, episode_index_for, load_dvae

TINY = dict(channels=8, max_mult=2, blocks=1, downsample=16, num_codes=16, heads=2, code_dim=16, temperature=1.0,
            logit_scale=10.0, n_episodes=2, episode_dim=8, use_episode=True, stem=4, norm="group", height=256,
            width=224)


def _frames(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 256, 224, 3), dtype=np.uint8)


@pytest.mark.parametrize("downsample,grid", [(16, (16, 14)), (32, (8, 7))])
def test_shapes(downsample, grid):
    torch.manual_seed(0)
    model = DVAE(DVAEDims(**{**TINY, "downsample": downsample})).eval()
    x = torch.rand(2, 3, 256, 224) * 2 - 1
    recon, idx, stats = model(x, torch.tensor([0, 1]))
    assert recon.shape == x.shape and idx.shape == (2, *grid, 2)
    assert model.dims.grid == grid and model.dims.bits_per_frame == grid[0] * grid[1] * 2 * 4
    assert stats["perplexity"] >= 1


def test_decode_from_indices_equals_eval_forward():
    torch.manual_seed(0)
    model = DVAE(DVAEDims(**TINY)).eval()
    x = torch.rand(2, 3, 256, 224) * 2 - 1
    ep = torch.tensor([1, 2])  # 2 is <unk>
    with torch.no_grad():
        recon, idx, _ = model(x, ep)
        assert torch.equal(model.encode(x), idx)
        assert torch.allclose(model.decode(idx, ep), recon, atol=1e-6)


def test_episode_changes_decoding_and_can_be_off():
    torch.manual_seed(0)
    model = DVAE(DVAEDims(**TINY))
    for block in model.decoder.stages[0]:  # FiLM starts as identity; perturb it
        torch.nn.init.normal_(block.film.weight)
        torch.nn.init.normal_(block.conv2.weight, std=0.1)  # the residual branch starts at zero
    model.eval()
    idx = torch.randint(0, 16, (1, 16, 14, 2))
    with torch.no_grad():
        assert not torch.allclose(model.decode(idx, torch.tensor([0])), model.decode(idx, torch.tensor([1])))
        assert torch.equal(model.decode(idx, None), model.decode(idx, torch.tensor([2])))
    plain = DVAE(DVAEDims(**{**TINY, "use_episode": False})).eval()
    assert plain.episode_embedding is None
    with torch.no_grad():
        plain.decode(idx, torch.tensor([0]))


def test_checkpoint_rebuild_weights_only(tmp_path):
    torch.manual_seed(0)
    model = DVAE(DVAEDims(**TINY)).eval()
    path = tmp_path / "dvae.pt"
    torch.save({"dims": model.dims.to_dict(), "state_dict": model.state_dict(), "episode_ids": ["a", "b"],
                "unseen_ids": [], "timing": {"fps": 25, "sample_rate": 16000}, "fingerprint": "x", "step": 0}, path)
    ckpt = torch.load(path, weights_only=True)
    again = DVAE(DVAEDims.from_checkpoint(ckpt["dims"]))
    again.load_state_dict(ckpt["state_dict"])
    again.eval()
    x = torch.rand(2, 3, 256, 224) * 2 - 1
    with torch.no_grad():
        a, ia, _ = model(x, torch.tensor([0, 1]))
        b, ib, _ = again(x, torch.tensor([0, 1]))
    assert torch.equal(ia, ib) and torch.equal(a, b)

    loaded, meta = load_dvae(path)
    assert not loaded.training and meta["episode_ids"] == ["a", "b"] and "state_dict" not in meta
    frames = _frames(3)
    codes = encode_frames(loaded, frames, batch_size=2)
    assert codes.dtype == np.uint16 and codes.shape == (3, 16, 14, 2)
    out = decode_codes(loaded, codes, episode_index_for(meta, "b"), batch_size=2)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    # codes → frames equals the eval forward of the same frames, quantised to uint8
    with torch.no_grad():
        xf = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
        ref, _, _ = loaded(xf, torch.full((3,), 1))
    ref = ((ref.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    # (batch size changes conv rounding, so a value may sit on the other side of a .5)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_episode_index_for():
    meta = {"episode_ids": ["a", "b", "c"], "unseen_ids": ["c"]}
    assert episode_index_for(meta, "a") == 0 and episode_index_for(meta, "b") == 1
    assert episode_index_for(meta, "c") == episode_index_for(meta, "zzz") == episode_index_for(meta, None) == 3


def test_discriminator_losses():
    torch.manual_seed(0)
    disc = MultiScaleDiscriminator(scales=2, channels=4)
    real, fake = torch.rand(2, 3, 256, 224), torch.rand(2, 3, 256, 224, requires_grad=True)
    r, f = disc(real), disc(fake)
    assert len(r) == 2 and r[0][0].shape == (2, 1, 32, 28) and r[1][0].shape == (2, 1, 16, 14)
    assert len(r[0][1]) == 3
    loss = g_hinge_loss(f) + feature_matching_loss(r, f)
    loss.backward()
    assert fake.grad.abs().sum() > 0
    assert d_hinge_loss(r, f) >= 0


def test_tiny_overfit_loss_decreases():
    torch.manual_seed(0)
    dims = DVAEDims(**{**TINY, "height": 64, "width": 64})
    model = DVAE(dims).train()
    x = torch.full((2, 3, 64, 64), -0.5)
    x[0, :, 10:40, 12:30] = 0.8  # a bright square on a flat background
    x[1, 0, 30:60, 20:50] = 0.6
    ep = torch.tensor([0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        recon, _, _ = model(x, ep)
        loss = (recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


@pytest.mark.parametrize("stem, downsample", [(2, 16), (8, 16), (8, 32)])
def test_stem_factors_keep_the_code_grid(stem, downsample):
    dims = DVAEDims(**{**TINY, "downsample": downsample, "stem": stem})
    model = DVAE(dims).eval()
    x = torch.rand(1, 3, 256, 224) * 2 - 1
    rec, idx, _ = model(x)
    assert rec.shape == x.shape and idx.shape == (1, *dims.grid, dims.heads)


def test_channel_norm_is_per_pixel_so_crops_see_the_same_network():
    """GroupNorm mixes statistics over the whole image (a crop would see other values); the
    channel norm that patch training relies on depends on each pixel's channels alone."""
    from nwt.models.dvae import ChannelNorm

    norm = ChannelNorm(16)
    x = torch.randn(2, 16, 32, 28)
    torch.testing.assert_close(norm(x)[..., 4:20, 8:20], norm(x[..., 4:20, 8:20]))
    group = torch.nn.GroupNorm(8, 16)
    assert not torch.allclose(group(x)[..., 4:20, 8:20], group(x[..., 4:20, 8:20]))
    with pytest.raises(ValueError, match="norm"):
        DVAEDims(**{**TINY, "norm": "batch"})
