"""Model dims: no defaults, saved as a dict, and older checkpoint layouts read by explicit migrations
(each case below is a dims dict as a checkpoint of that time held it)."""
import dataclasses

import numpy as np
import pytest
import torch

from nwt.checkpoint import save_checkpoint
from nwt.constants import CROP_H, CROP_W, MELS_PER_FRAME, N_MELS
from nwt.geometry import sync_mouth_box
from nwt.models.audio_encoder import MLP_RATIO
from nwt.models.dims import DimsError
from nwt.models.dvae import DVAE, DVAEDims, migrate_dvae_dims
from nwt.models.dvae_io import load_dvae
from nwt.models.prior import PriorDims, migrate_prior_dims
from nwt.models.sync_expert import (
    MOUTH_BOX_COLS,
    MOUTH_BOX_ROWS,
    SYNC_WINDOW,
    SyncDims,
    SyncExpert,
    load_sync_expert,
    migrate_sync_dims,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("cls", [DVAEDims, PriorDims, SyncDims])
def test_dims_have_no_defaults(cls):
    for field in dataclasses.fields(cls):
        assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name
    with pytest.raises(TypeError):
        cls()


# ----------------------------------------------------------------------------- dVAE
# the first dvae.pt layout (before `stem` and `norm`)
DVAE_FIRST = dict(channels=64, max_mult=4, blocks=1, downsample=16, num_codes=256, heads=2, code_dim=128,
                  temperature=1.0, logit_scale=10.0, n_episodes=5, episode_dim=32, use_episode=True, height=256,
                  width=224)


def test_dvae_dims_before_norm_and_stem_were_group_norm_stem_4():
    dims = DVAEDims.from_checkpoint(DVAE_FIRST)
    assert dims == DVAEDims(**DVAE_FIRST, stem=4, norm="group")
    assert migrate_dvae_dims(DVAE_FIRST) == {**DVAE_FIRST, "stem": 4, "norm": "group"}


def test_dvae_dims_without_frame_size_were_the_crop():
    saved = {k: v for k, v in DVAE_FIRST.items() if k not in ("height", "width")}
    dims = DVAEDims.from_checkpoint({**saved, "stem": 2, "norm": "channel"})
    assert (dims.height, dims.width, dims.stem, dims.norm) == (CROP_H, CROP_W, 2, "channel")


def test_dvae_dims_round_trip_and_errors():
    dims = DVAEDims(**DVAE_FIRST, stem=8, norm="channel")
    assert DVAEDims.from_checkpoint(dims.to_dict()) == dims
    with pytest.raises(DimsError, match="unknown key 'bogus'"):
        DVAEDims.from_checkpoint({**dims.to_dict(), "bogus": 1})
    with pytest.raises(DimsError, match="lack channels"):
        DVAEDims.from_checkpoint({k: v for k, v in dims.to_dict().items() if k != "channels"})


def test_load_dvae_reads_an_old_layout(tmp_path):
    old = dict(DVAE_FIRST, channels=8, max_mult=2, num_codes=16, code_dim=16, episode_dim=8, n_episodes=2)
    torch.manual_seed(0)
    model = DVAE(DVAEDims(**old, stem=4, norm="group")).eval()
    path = tmp_path / "dvae.pt"
    save_checkpoint(path, dict(dims=old, state_dict=model.state_dict(), episode_ids=["a", "b"], unseen_ids=[],
                               timing=dict(fps=25, sample_rate=16000), fingerprint="x", step=0))
    loaded, meta = load_dvae(path)
    assert loaded.dims.norm == "group" and meta["dims"] == old
    x = torch.rand(1, 3, 256, 224) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])


# ----------------------------------------------------------------------------- prior
# the first prior.pt layout: no sync / audio skip / style / null audio / MAR fields, mlp_ratio saved
PRIOR_FIRST = dict(mode="far", layers=4, dim=256, heads=4, audio_layers=2, audio_window=8, context_frames=16,
                   grid_h=16, grid_w=14, code_heads=2, num_codes=256, n_episodes=5, n_mels=80, code_dim=16,
                   spatial_dim=32, mlp_ratio=4, logit_scale=4.0)


def test_prior_dims_of_the_first_layout():
    dims = PriorDims.from_checkpoint(PRIOR_FIRST)
    base = {k: v for k, v in PRIOR_FIRST.items() if k != "mlp_ratio"}
    assert dims == PriorDims(**base, sync_dim=0, audio_skip=0, style_dim=0, null_audio=False, style_hidden=64,
                             mar_layers=2, mar_dim=64, mar_heads=2)
    assert "mlp_ratio" not in migrate_prior_dims(PRIOR_FIRST) and "mlp_ratio" not in dims.to_dict()


def test_prior_dims_before_null_audio():
    """Between the style latent and guidance: style, sync and MAR saved, no null_audio."""
    saved = dict(PRIOR_FIRST, sync_dim=64, audio_skip=32, style_dim=8, style_hidden=32, mar_layers=1, mar_dim=32,
                 mar_heads=4)
    dims = PriorDims.from_checkpoint(saved)
    assert dims.null_audio is False
    assert (dims.sync_dim, dims.audio_skip, dims.style_dim, dims.style_hidden) == (64, 32, 8, 32)
    assert (dims.mar_layers, dims.mar_dim, dims.mar_heads) == (1, 32, 4)


def test_prior_dims_round_trip_and_errors():
    dims = PriorDims.from_checkpoint({**PRIOR_FIRST, "null_audio": True})
    assert dims.null_audio and PriorDims.from_checkpoint(dims.to_dict()) == dims
    with pytest.raises(DimsError, match=f"mlp_ratio=2.*fixed at {MLP_RATIO}"):
        PriorDims.from_checkpoint({**PRIOR_FIRST, "mlp_ratio": 2})
    with pytest.raises(DimsError, match="unknown key 'depth'"):
        PriorDims.from_checkpoint({**PRIOR_FIRST, "depth": 3})
    with pytest.raises(DimsError, match="lack grid_h"):
        PriorDims.from_checkpoint({k: v for k, v in PRIOR_FIRST.items() if k != "grid_h"})


# ----------------------------------------------------------------------------- sync expert
# the sync.pt layout before the window, mel layout and mouth box became constants (lists: JSON-like)
SYNC_FIRST = dict(window=5, mels_per_frame=4, n_mels=80, crop_rows=[0.375, 0.75], crop_cols=[0.25, 0.75], height=32,
                  width=40, channels=16, audio_channels=64, embed_dim=64, dropout=0.1)


def test_sync_dims_drop_the_fixed_values():
    dims = SyncDims.from_checkpoint(SYNC_FIRST)
    assert dims == SyncDims(height=32, width=40, channels=16, audio_channels=64, embed_dim=64, dropout=0.1,
                            crop_rows=MOUTH_BOX_ROWS, crop_cols=MOUTH_BOX_COLS)
    assert set(migrate_sync_dims(SYNC_FIRST)) == {f.name for f in dataclasses.fields(SyncDims)}
    assert (dims.window, dims.mels_per_frame, dims.n_mels) == (SYNC_WINDOW, MELS_PER_FRAME, N_MELS)
    assert (dims.crop_rows, dims.crop_cols, dims.audio_frames) == (MOUTH_BOX_ROWS, MOUTH_BOX_COLS, 20)
    assert SyncDims.from_checkpoint(dims.to_dict()) == dims


@pytest.mark.parametrize("key, value", [("window", 7), ("mels_per_frame", 2), ("n_mels", 40)])
def test_sync_dims_with_another_fixed_value_are_an_error(key, value):
    with pytest.raises(DimsError, match=f"{key}=.*fixed at"):
        SyncDims.from_checkpoint({**SYNC_FIRST, key: value})


def test_sync_dims_box_of_each_layout():
    """The first layout saved the box, the next had it constant (no key: the constant box), today's
    saves the box it was trained with (it follows the framing)."""
    middle = {k: v for k, v in SYNC_FIRST.items() if k not in ("window", "mels_per_frame", "n_mels",
                                                                   "crop_rows", "crop_cols")}
    assert SyncDims.from_checkpoint(middle) == SyncDims.from_checkpoint(SYNC_FIRST)
    assert SyncDims.from_checkpoint(middle).crop_rows == MOUTH_BOX_ROWS == sync_mouth_box(2.0, 0.19)[0]
    moved = SyncDims.from_checkpoint({**SYNC_FIRST, "crop_rows": [0.4, 0.8], "crop_cols": (0.2, 0.75)})
    assert (moved.crop_rows, moved.crop_cols) == ((0.4, 0.8), (0.2, 0.75))


def test_load_sync_expert_reads_the_old_layout(tmp_path):
    torch.manual_seed(0)
    model = SyncExpert(SyncDims.from_checkpoint(SYNC_FIRST)).eval()
    path = tmp_path / "sync.pt"
    save_checkpoint(path, dict(dims=SYNC_FIRST, state_dict=model.state_dict(), fingerprint="x", step=3,
                               timing=dict(fps=25, sample_rate=16000)))
    loaded, timing = load_sync_expert(path)
    v = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 5, 32, 40), dtype=np.uint8))
    a = torch.randn(2, 20, 80)
    assert torch.equal(model(v, a), loaded(v, a)) and (timing.fps, timing.sample_rate) == (25, 16000)
    save_checkpoint(path, dict(dims=SYNC_FIRST, state_dict=model.state_dict(), fingerprint="x", step=3))
    with pytest.raises(ValueError, match="no timing"):
        load_sync_expert(path)
