"""The framing measure: our faces logic on clips embedded in a wider frame against their own framing."""
from pathlib import Path

import numpy as np
import pytest
from presenter_data import presenter_clip

from nwt.data.media import write_video
from nwt.eval.framing import CANVAS_GREY, CANVAS_H, CANVAS_W, EMBED_SCALE, embed_in_wide_frame, paper_placement_error

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nwt_samples"


def test_embed_centres_the_upscaled_frame():
    frame = np.full((256, 224, 3), 200, np.uint8)
    wide = embed_in_wide_frame(frame)
    assert wide.shape == (CANVAS_H, CANVAS_W, 3)
    rows, cols = np.nonzero(wide[..., 0] == 200)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (256 * EMBED_SCALE, 224 * EMBED_SCALE)
    assert abs((rows.min() + rows.max()) / 2 - CANVAS_H / 2) <= 1
    assert abs((cols.min() + cols.max()) / 2 - CANVAS_W / 2) <= 1
    assert wide[0, 0, 0] == CANVAS_GREY


@pytest.fixture(scope="module")
def presenter_dir(tmp_path_factory) -> Path:
    """Two clips of the rendered presenter, framed as the faces stage frames them by default."""
    folder = tmp_path_factory.mktemp("framed")
    rng = np.random.default_rng(0)
    for i in range(2):
        video, audio = presenter_clip(rng, 40)
        write_video(folder / f"clip{i}.mp4", video, 25, audio, 16000)
    return folder


def test_the_framing_of_the_measured_face_reproduces_the_clips(presenter_dir):
    """The clips' face is 0.56 of the crop high (presenter_data), so the default framing (0.5) is
    off in size; the framing computed from the face the measure reports (height h, centre row c:
    face_scale 1/h, centre_shift (0.5 − c)/h) reproduces the clips to a few px, and a much wider
    framing is far off."""
    default = paper_placement_error(presenter_dir, 2.0, 0.19)
    assert default["clips_placed"] == 2 and default["dh_mean"] < -0.03, default
    h, c = default["paper_face_h"], default["paper_face_cy"]
    matched = paper_placement_error(presenter_dir, 1 / h, (0.5 - c) / h)
    assert matched["placement_error"] < 0.03 and matched["placement_error"] < default["placement_error"] / 1.5, matched
    wide = paper_placement_error(presenter_dir, 3.55, 0.88)
    assert wide["placement_error"] > 0.15 and wide["dh_mean"] < -0.1, wide


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.mp4"):
        paper_placement_error(tmp_path, 2.0, 0.19)


@pytest.mark.slow
@pytest.mark.skipif(not (SAMPLES / "gt").is_dir(), reason="../shared/data/nwt_samples is absent (real test footage)")
def test_paper_framing_profile_reproduces_the_papers_crop(tmp_path):
    """profiles/paper_framing.yaml on three of the paper's clips (linked, not copied) beats the default by far."""
    for path in sorted((SAMPLES / "gt").glob("*.mp4"))[:3]:
        (tmp_path / path.name).symlink_to(path)
    paper = paper_placement_error(tmp_path, 3.55, 0.88)
    default = paper_placement_error(tmp_path, 2.0, 0.19)
    assert paper["placement_error"] < 0.05 < 0.2 < default["placement_error"], (paper, default)
