import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_model_store(tmp_path_factory):
    """No test reads or writes the user's model store (~/.cache/nwt) or follows their $NWT_MODEL
    (nwt.store); tests of the store set $NWT_HOME to a folder of their own."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NWT_HOME", str(tmp_path_factory.mktemp("nwt_home")))
    patch.delenv("NWT_MODEL", raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    """A 6 s 64×48 25 fps H.264 + AAC clip with a tone, made by ffmpeg."""
    path = tmp_path_factory.mktemp("media") / "tiny.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=6",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=6",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def syllable_envelope(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames,) mouth opening in [0, 1]: bursts of 2–6 frames with pauses, like speech."""
    env = np.zeros(frames + 8)
    t = 0
    while t < frames:
        n = int(rng.integers(2, 7))
        if rng.random() < 0.75:
            env[t : t + n] = rng.uniform(0.3, 1.0) * np.sin(np.linspace(0, np.pi, n + 2)[1:-1])
        t += n
    return env[:frames]


def repo_section(name: str, cls: type):
    """One section of the repository's params.yaml as its typed dataclass (`nwt.params.build`, so
    checked like `load_params`); tests change keys with `nwt.params.with_changes`."""
    import yaml

    from nwt.params import build

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return build(cls, raw[name], name)


def synthetic_config(**changes):
    """The render settings of the default corpus (media rates and identities from params.yaml),
    with render-only settings (faces_per_frame, silence_s, ...) changed."""
    from nwt.data.synthetic import SyntheticConfig
    from nwt.params import DownloadParams, MediaParams

    return SyntheticConfig.from_params(repo_section("media", MediaParams),
                                       repo_section("download", DownloadParams).synthetic, **changes)
