"""Sync expert: shapes, unit-norm embeddings, mouth crops, rebuild from the checkpoint alone."""
import numpy as np
import pytest
import torch

from nwt.checkpoint import save_checkpoint
from nwt.geometry import sync_mouth_box
from nwt.models.sync_expert import SyncDims, SyncExpert, load_sync_expert, mouth_crops

torch.set_num_threads(1)

ROWS, COLS = sync_mouth_box(2.0, 0.19)  # params.yaml's framing
TINY = dict(channels=4, audio_channels=8, embed_dim=16, height=24, width=28, dropout=0.1, crop_rows=ROWS,
            crop_cols=COLS)


def tiny() -> SyncExpert:
    torch.manual_seed(0)
    return SyncExpert(SyncDims(**TINY)).eval()


def test_streams_give_unit_embeddings():
    m = tiny()
    v = torch.randint(0, 256, (3, 5, 24, 28), dtype=torch.uint8)
    a = torch.randn(3, 20, 80)
    ev, ea = m.forward_video(v), m.forward_audio(a)
    assert ev.shape == ea.shape == (3, 16)
    assert torch.allclose(ev.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(ea.norm(dim=-1), torch.ones(3), atol=1e-5)
    d = m(v, a)
    assert d.shape == (3,) and bool(((d >= 0) & (d <= 2 + 1e-5)).all())


def test_front_ends(rng):
    m = tiny()
    frames = rng.integers(0, 256, (7, 256, 224, 3), dtype=np.uint8)
    x = m.frames_to_input(frames)
    assert x.shape == (7, 24, 28) and x.dtype == torch.uint8
    wide = mouth_crops(frames, m.dims, margin=3)
    assert wide.shape == (7, 30, 34)
    from nwt.constants import Timing

    mel = m.audio_to_input(rng.normal(0, 0.1, 7 * 640).astype(np.float32), Timing(25, 16000))
    assert mel.shape == (28, 80)  # 4 mel frames per video frame


def test_mouth_box_is_where_the_dark_mouth_is():
    frames = np.full((1, 256, 224, 3), 200, np.uint8)
    frames[0, 125:150, 90:135] = 20  # a dark mouth at rows ≈0.49–0.59, columns ≈0.40–0.60
    crop = mouth_crops(frames, SyncDims(**{**TINY, "height": 48, "width": 56}))[0].astype(float)
    assert crop.min() < 40 and crop.max() > 190  # mouth and skin both inside the box


def test_mouth_box_follows_the_framing():
    """A wider framing (smaller face, lower in the crop) moves the box to where the mouth is."""
    rows, cols = sync_mouth_box(4.0, 1.2)  # face box rows 0.075–0.325 of the crop
    frames = np.full((1, 256, 224, 3), 200, np.uint8)
    frames[0, 62:74, 101:123] = 20  # the mouth 0.27 face heights below the face centre
    wide = SyncDims(**{**TINY, "height": 48, "width": 56, "crop_rows": rows, "crop_cols": cols})
    crop = mouth_crops(frames, wide)[0].astype(float)
    assert crop.min() < 40 and crop.max() > 190
    default = SyncDims(**{**TINY, "height": 48, "width": 56})
    assert mouth_crops(frames, default)[0].min() > 190  # the default framing's box misses it


def test_dims_reject_a_box_outside_the_crop():
    with pytest.raises(ValueError, match="crop_rows must be fractions"):
        SyncDims(**{**TINY, "crop_rows": (0.6, 0.4)})


def test_dims_roundtrip_and_unknown_keys():
    dims = SyncDims(**TINY)
    assert SyncDims.from_checkpoint(dims.to_dict()) == dims
    with pytest.raises(ValueError, match="unknown"):
        SyncDims.from_checkpoint({**dims.to_dict(), "bogus": 1})


def test_rebuild_from_checkpoint_alone(tmp_path):
    m = tiny()
    path = tmp_path / "sync.pt"
    save_checkpoint(path, dict(dims=m.dims.to_dict(), state_dict=m.state_dict(), fingerprint="x", step=3,
                               timing=dict(fps=25, sample_rate=16000)))
    raw = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert set(raw) == {"dims", "state_dict", "fingerprint", "step", "timing"}
    m2, timing = load_sync_expert(path)
    assert not m2.training and timing.fps == 25 and timing.sample_rate == 16000
    v = torch.randint(0, 256, (2, 5, 24, 28), dtype=torch.uint8)
    a = torch.randn(2, 20, 80)
    assert torch.equal(m(v, a), m2(v, a))


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a sync expert"):
        load_sync_expert(path)
