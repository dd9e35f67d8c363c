"""Episode-control scoring on hand-made frames and with a stand-in generator."""
from types import SimpleNamespace

import numpy as np
import pytest

from nwt.eval.control import (
    control_accuracy,
    control_summary,
    episode_control,
    nearest_episode,
    real_region_stats,
    region_stats,
)
from nwt.params import WHOLE_FRAME, SamplingParams

LOOKS = {"red_blue": ((200, 30, 30), (30, 30, 200)), "green_yellow": ((30, 200, 30), (220, 220, 40))}


def frames(look, n=3, noise=10, seed=0):
    """n 256×224 frames: hair colour in the top rows, shirt colour in the bottom rows, grey face."""
    hair, shirt = LOOKS[look]
    f = np.full((n, 256, 224, 3), 128, np.int32)
    f[:, :40] = hair
    f[:, 216:] = shirt
    f += np.random.default_rng(seed).integers(-noise, noise + 1, f.shape)
    return f.clip(0, 255).astype(np.uint8)


def test_region_stats_and_nearest():
    s = region_stats(frames("red_blue", noise=0))
    assert s.shape == (6,) and np.allclose(s[:3], np.array(LOOKS["red_blue"][0]) / 255, atol=0.01)
    assert np.allclose(s[3:], np.array(LOOKS["red_blue"][1]) / 255, atol=0.01)
    refs = real_region_stats([("red_blue", frames("red_blue", seed=1)), ("green_yellow", frames("green_yellow")),
                              ("red_blue", frames("red_blue", 5, seed=2)), ("empty", frames("red_blue")[:0])])
    assert set(refs) == {"red_blue", "green_yellow"}
    assert nearest_episode(region_stats(frames("green_yellow", seed=3)), refs) == "green_yellow"
    with pytest.raises(ValueError):
        region_stats(np.zeros((0, 8, 8, 3), np.uint8))


def test_control_accuracy_counts():
    refs = {k: region_stats(frames(k)) for k in LOOKS}
    gen = [("red_blue", region_stats(frames("red_blue", seed=4))), ("green_yellow", region_stats(frames("red_blue"))),
           ("green_yellow", region_stats(frames("green_yellow", seed=5)))]
    out = control_accuracy(gen, refs)
    assert out["accuracy"] == pytest.approx(2 / 3) and out["generations"] == 3 and out["episodes"] == 2
    assert out["per_episode_accuracy"] == {"red_blue": 1.0, "green_yellow": 0.5}
    with pytest.raises(ValueError, match="no real-frame"):
        control_accuracy([("other", refs["red_blue"])], refs)


class StandIn:
    """A generator whose prior follows the requested episode (or ignores it), decoder held fixed."""

    episode_ids = ["red_blue", "green_yellow", "never_shown"]

    def __init__(self, obeys: bool):
        self.obeys, self.decoded_with = obeys, set()

    def from_audio(self, audio, episode_id, *, sampling, seed, decode_episode="?", prime=True):
        assert sampling == SAMPLING and prime is False  # control measures the prior alone
        self.decoded_with.add(decode_episode)
        look = episode_id if self.obeys else "red_blue"
        return SimpleNamespace(frames=frames(look, n=2, seed=seed))


SAMPLING = SamplingParams(temperature=0.8, top_k=0, top_p=1.0, guidance=5.0, guidance_box=WHOLE_FRAME)


def test_episode_control_with_a_stand_in_generator():
    refs = {k: region_stats(frames(k, seed=9)) for k in LOOKS}
    audios = [np.zeros(100, np.float32)] * 3
    good = StandIn(True)
    out = episode_control(good, audios, refs, SAMPLING, seed=0)
    assert out["accuracy"] == 1.0 and out["generations"] == 6 and good.decoded_with == {None}
    bad = StandIn(False)
    assert episode_control(bad, audios, refs, SAMPLING, seed=0, decode_episode="red_blue")["accuracy"] == 0.5  # chance
    assert bad.decoded_with == {"red_blue"}
    # too few episodes or no audio: null + reason, nothing generated (a one-video corpus runs to the end)
    calls = len(good.decoded_with)
    one = episode_control(good, audios, {"red_blue": refs["red_blue"]}, SAMPLING, seed=0)
    assert one["accuracy"] is None and one["generations"] == 0 and "two trained episodes" in one["reason"]
    assert control_summary(one) == {"accuracy": None, "generations": 0, "reason": one["reason"]}
    silent = episode_control(good, [], refs, SAMPLING, seed=0)
    assert silent["accuracy"] is None and "no test audio" in silent["reason"]
    assert len(good.decoded_with) == calls
    assert control_summary(out) == {"accuracy": 1.0, "generations": 6}
