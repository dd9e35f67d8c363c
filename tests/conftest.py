import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = Path(__file__).resolve().parents[1]


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
