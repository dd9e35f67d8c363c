import subprocess

import numpy as np
import pytest

from nwt.data.media import MediaError, check_episode, iter_frames, probe, read_audio, write_video


def test_probe_and_timestamp_resampling(tiny_video):
    info = probe(tiny_video)
    assert (info.width, info.height, info.has_audio) == (64, 48, True)
    frames = list(iter_frames(tiny_video, fps=10))  # 25 fps source read at 10 fps by timestamp
    assert abs(len(frames) - 60) <= 1
    audio = read_audio(tiny_video, 16000)  # 44.1 kHz AAC → 16 kHz mono
    assert abs(len(audio) / 16000 - 6.0) < 0.1


def test_not_a_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(MediaError) as err:
        check_episode(bad, 1.0)
    assert err.value.reason == "corrupt"


def test_missing_file(tmp_path):
    with pytest.raises(MediaError) as err:
        probe(tmp_path / "nope.mp4")
    assert err.value.reason == "download_failed"


def test_video_without_audio(tmp_path, tiny_video):
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tiny_video), "-an", "-c", "copy", str(silent)], check=True)
    with pytest.raises(MediaError) as err:
        check_episode(silent, 1.0)
    assert err.value.reason == "no_audio"


def test_audio_only(tmp_path, tiny_video):
    audio_only = tmp_path / "audio.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tiny_video), "-vn", "-c", "copy", str(audio_only)], check=True)
    with pytest.raises(MediaError) as err:
        check_episode(audio_only, 1.0)
    assert err.value.reason == "no_video"


def test_too_short(tiny_video):
    with pytest.raises(MediaError) as err:
        check_episode(tiny_video, 10.0)
    assert err.value.reason == "too_short"


def test_truncated_file_is_corrupt(tmp_path, tiny_video):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(tiny_video.read_bytes()[:2000])  # moov atom at the end is lost
    with pytest.raises(MediaError) as err:
        check_episode(cut, 1.0)
    assert err.value.reason == "corrupt"


def test_write_video_muxes_audio_and_metadata(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (25, 64, 48, 3), dtype=np.uint8)
    audio = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    out = tmp_path / "out.mp4"
    write_video(out, frames, 25, audio, 16000, metadata={"comment": "made by a test"})
    info = probe(out)
    assert info.has_audio and (info.width, info.height) == (48, 64)
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=comment", "-of", "csv=p=0",
                           str(out)], capture_output=True, text=True).stdout
    assert "made by a test" in tags


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_videos_follow_the_umask(tmp_path, umask, mode):
    """Like every atomic write (nwt/atomic.py): not the temporary file's 0600."""
    import os

    frames = np.zeros((3, 16, 16, 3), np.uint8)
    old = os.umask(umask)
    try:
        write_video(tmp_path / "v.mp4", frames, 25, None, 16000)
    finally:
        os.umask(old)
    assert (tmp_path / "v.mp4").stat().st_mode & 0o777 == mode


def test_media_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(MediaError("no_audio", "x.mp4: no audio stream")))
    assert err.reason == "no_audio" and str(err) == "x.mp4: no audio stream"
