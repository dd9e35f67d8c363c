"""nwt.eval.look on frames of the synthetic corpus's own presenter renderer: held-out frames of a
look pass its threshold, frames of another look (hair, shirt, set) do not, the mouth does not
count, and bad input says what is wrong."""
import numpy as np
import pytest
from presenter_data import presenter_clip

from nwt.eval.look import PERCENTILE, LookReference, outside_mouth


@pytest.fixture(scope="module")
def looks():
    """Two episodes' looks: (reference, held-out, more held-out) clips of the same presenter and
    set each, the second episode another presenter, shirt and wall."""
    rng = np.random.default_rng(1)
    a = [presenter_clip(rng, 30, identity=0, wall=(120, 110, 100), shirt=(200, 120, 80))[0] for _ in range(3)]
    b = [presenter_clip(rng, 30, identity=1, wall=(60, 90, 130), shirt=(40, 40, 160))[0] for _ in range(3)]
    return dict(a=a, b=b)


@pytest.fixture(scope="module")
def reference(looks):
    ref = LookReference.from_frames({e: clips[0] for e, clips in looks.items()})
    return ref.calibrate({e: clips[1] for e, clips in looks.items()})


def test_threshold_is_the_heldout_percentile(reference, looks):
    for episode, clips in looks.items():
        d = reference.distance(episode, clips[1])
        assert d.shape == (30,) and (d >= 0).all()
        assert reference.threshold[episode] == pytest.approx(np.percentile(d, PERCENTILE))
        assert reference.ok(episode, clips[1]).mean() >= 0.9


def test_same_look_passes_other_look_fails(reference, looks):
    # frames never seen by the reference or the calibration, of the right look: (nearly) all pass
    assert reference.ok("a", looks["a"][2]).mean() >= 0.8
    assert reference.ok("b", looks["b"][2]).mean() >= 0.8
    # the other episode's look, asked for as this one: every frame fails, far beyond the threshold
    assert not reference.ok("a", looks["b"][2]).any()
    assert not reference.ok("b", looks["a"][2]).any()
    assert reference.distance("a", looks["b"][2]).min() > 3 * reference.threshold["a"]


def test_mouth_box_does_not_count_but_hair_and_shirt_do(reference, looks):
    frames = looks["a"][2].copy()
    h, w = frames.shape[1:3]
    smeared = frames.copy()
    smeared[:, int(0.45 * h) : int(0.7 * h), int(0.35 * w) : int(0.65 * w)] = (0, 255, 0)  # inside the box
    assert np.allclose(reference.distance("a", smeared), reference.distance("a", frames))
    hair = frames.copy()
    hair[:, : h // 4] = (0, 255, 0)  # a green smear over the hair and the set above it
    assert not reference.ok("a", hair).any()
    keep = outside_mouth(32, 28)
    assert keep.shape == (32, 28) and not keep[16, 14] and keep[0, 0] and keep[-1, -1]


def test_bad_input_errors(reference, looks):
    with pytest.raises(ValueError, match="no look reference for episode 'c'"):
        reference.distance("c", looks["a"][0])
    with pytest.raises(ValueError, match="uint8 RGB"):
        reference.distance("a", looks["a"][0].astype(np.float32))
    with pytest.raises(ValueError, match="one size"):
        reference.distance("a", looks["a"][0][:, :128])
    uncalibrated = LookReference.from_frames({"a": looks["a"][0]})
    with pytest.raises(ValueError, match="calibrate"):
        uncalibrated.ok("a", looks["a"][1])
    with pytest.raises(ValueError, match="no episodes"):
        LookReference.from_frames({})
