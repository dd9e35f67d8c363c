"""FID / FVD loading paths, offline: weights files in the real formats (a randomly initialised
Inception-v3 state dict, a small TorchScript module with I3D's call signature), the clear errors
for missing or wrong files, and the features on rendered presenter frames."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from presenter_data import evaluate_params, presenter_clips, sync_path  # noqa: F401 (fixtures)

from nwt.eval.distribution import DistributionMetrics, standard_extractors
from nwt.eval.fid import FEATURE_DIM, FidInceptionV3, _tf_avg_pool, fid_features, load_fid_inception
from nwt.eval.fvd import SEGMENT_FRAMES, fvd_features, load_i3d, segments

torch.set_num_threads(1)
# torchvision's documented parameter count of inception_v3 (27,161,264) less its auxiliary head
# (conv0 98,560 + conv1 2,459,136 + fc 769,000): the FID network has no auxiliary head
TORCHVISION_NO_AUX_PARAMS = 27_161_264 - 3_326_696


@pytest.fixture(scope="module")
def fid_file(tmp_path_factory):
    """A randomly initialised FID Inception-v3 saved as pt_inception-2015-12-05 is: a plain state
    dict, 1008 classes, no BatchNorm `num_batches_tracked` (a file from old torch)."""
    torch.manual_seed(0)
    model = FidInceptionV3().eval()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path, model


class TinyI3D(torch.nn.Module):
    """I3D's TorchScript call signature; returns what it was given so the test can check it:
    per-video [mean, min, max, T, H, W] after its own rescale/resize, then the three flags."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        b = x.shape[0]
        flat = x.reshape(b, -1)
        shape = torch.tensor([float(x.shape[2]), float(x.shape[3]), float(x.shape[4])]).repeat(b, 1)
        flags = torch.tensor([float(rescale), float(resize), float(return_features)]).repeat(b, 1)
        return torch.cat([flat.mean(1, keepdim=True), flat.amin(1, keepdim=True), flat.amax(1, keepdim=True),
                          shape, flags], 1)


@pytest.fixture(scope="module")
def fvd_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fvd") / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D()).save(str(path))
    return path


def test_fid_network_is_torchvisions_layout():
    model = FidInceptionV3(num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_NO_AUX_PARAMS
    keys = set(model.state_dict())
    assert {"Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_var", "Mixed_6e.branch7x7dbl_5.bn.bias",
            "Mixed_7c.branch3x3dbl_3b.conv.weight", "fc.weight"} <= keys
    assert not any(k.startswith("AuxLogits") for k in keys)
    x = torch.ones(1, 4, 5, 5)  # TF's average pool leaves the padding out: ones stay ones at the border
    assert torch.equal(_tf_avg_pool(x), x)


def test_fid_loads_a_state_dict_file_and_embeds_frames(fid_file, presenter_clips):
    path, reference = fid_file
    model = load_fid_inception(path)
    assert not model.training
    seen = []
    model.Conv2d_1a_3x3.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    frames = presenter_clips[0][0][:3]  # (3, 256, 224, 3) uint8
    feats = fid_features(model, frames, batch_size=2)
    assert feats.shape == (3, FEATURE_DIM) and feats.dtype == np.float32 and np.isfinite(feats).all()
    # the network sees 299×299 in [−1, 1], as pytorch-fid feeds it
    assert [tuple(x.shape) for x in seen] == [(2, 3, 299, 299), (1, 3, 299, 299)]
    assert min(x.min() for x in seen) >= -1 and max(x.max() for x in seen) <= 1
    with torch.no_grad():
        want = reference(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(feats, want.numpy(), rtol=1e-5, atol=1e-7)


def test_fid_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth.*evaluate.fid_weights"):
        load_fid_inception(tmp_path / "missing.pth")
    imagenet = tmp_path / "inception_v3_google.pth"  # torchvision's ImageNet weights: 1000 classes
    torch.save({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}, imagenet)
    with pytest.raises(ValueError, match="1000 classes: these are not the FID weights"):
        load_fid_inception(imagenet)
    partial = tmp_path / "partial.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, partial)
    with pytest.raises(ValueError, match="does not fit the FID Inception-v3: missing"):
        load_fid_inception(partial)
    other = tmp_path / "other.pth"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not an Inception-v3 state dict"):
        load_fid_inception(other)


def test_fvd_calls_i3d_with_the_standard_convention(fvd_file, presenter_clips):
    model = load_i3d(fvd_file)
    frames = presenter_clips[0][0][:40]  # two 16-frame segments, an 8-frame tail left out
    feats = fvd_features(model, frames)
    assert feats.shape == (2, 9)
    mean, lo, hi, t, h, w, rescale, resize, return_features = feats.T
    assert (t == SEGMENT_FRAMES).all() and (h == 224).all() and (w == 224).all()  # the module resized
    assert (rescale == 1).all() and (resize == 1).all() and (return_features == 1).all()
    assert lo.min() >= -1 and hi.max() <= 1  # it was given 0–255 and rescaled itself
    segs = segments(frames)
    assert segs.shape == (2, 16, 256, 224, 3) and np.array_equal(segs[1, 0], frames[16])
    # the mean survives the trilinear resize closely: it was computed on these frames, in order
    want = segs.reshape(2, -1).astype(np.float64).mean(1) / 127.5 - 1
    np.testing.assert_allclose(mean, want, atol=0.02)


def test_fvd_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt.*evaluate.fvd_weights"):
        load_i3d(tmp_path / "missing.pt")
    state_dict = tmp_path / "state.pt"
    torch.save({"x": torch.zeros(1)}, state_dict)
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_i3d(state_dict)


def test_named_weights_give_fid_and_fvd_beside_the_floor(fid_file, fvd_file, presenter_clips):
    extractors = standard_extractors(evaluate_params(fid_weights=str(fid_file[0]), fid_frame_stride=25,
                                                     fvd_weights=str(fvd_file)))
    dist = DistributionMetrics(extractors)
    for frames, _ in presenter_clips[:4]:
        for source, video in (("gt", frames), ("recon", frames[:, :, ::-1]), ("gen", 255 - frames)):
            dist.add_frames(source, np.ascontiguousarray(video))
    per_source, extra = dist.metrics()
    assert "fid_note" not in extra and "fvd_note" not in extra
    assert extra["frechet_samples"]["fid"] == 4 * 2  # frames 0 and 25 of each 50-frame clip
    assert extra["frechet_samples"]["fvd"] == 4 * 3  # three 16-frame segments per clip
    for key in ("fid", "fvd"):
        assert all(per_source[s][key] is not None and per_source[s][key] >= 0 for s in ("gt", "recon", "gen"))
    assert per_source["gen"]["fvd"] > per_source["gt"]["fvd"]  # inverted frames: the mean moves
