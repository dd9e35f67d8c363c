"""`nwt generate` on several audio files: models load once, a bad file is reported with its reason and
skipped, the rest are written, and the exit status says whether any failed (2: a usage error);
generated videos follow the umask."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from tiny_checkout import make_checkout, write_wav

import nwt.generate
from nwt.cli import main
from nwt.data.media import probe

torch.set_num_threads(1)
EXPLICIT = ["--temperature", "0.8", "--top-k", "0", "--top-p", "1", "--guidance", "1"]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture
def loads(monkeypatch) -> list:
    """Counts the checkpoint loads of nwt.generate.Generator."""
    calls = []
    real = nwt.generate.Generator.__init__

    def counted(self, *a, **kw):
        calls.append(a)
        real(self, *a, **kw)

    monkeypatch.setattr(nwt.generate.Generator, "__init__", counted)
    return calls


def test_batch_writes_the_good_files_and_reports_the_bad(checkout, tmp_path, monkeypatch, capsys, loads):
    monkeypatch.chdir(checkout)  # the checkout's checkpoints and params.yaml
    good = [write_wav(tmp_path / "a.wav", 1.0, 0), tmp_path / "b.mp3"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(write_wav(tmp_path / "b_src.wav", 1.5, 1)), str(good[1])],
                   check=True)
    bad = {"missing.wav": "does not exist", "notes.wav": "cannot read audio", "silent.wav": "silent",
           "short.wav": "need at least"}
    (tmp_path / "notes.wav").write_text("not audio at all")
    soundfile.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    write_wav(tmp_path / "short.wav", 0.1)
    audios = [good[0], tmp_path / "missing.wav", tmp_path / "notes.wav", good[1], tmp_path / "silent.wav",
              tmp_path / "short.wav"]
    out_dir = tmp_path / "videos"
    assert main(["generate", "--audio", *map(str, audios), "--out-dir", str(out_dir)]) == 1
    assert len(loads) == 1  # the models load once for all files
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.mp4", "b.mp4"]  # nothing half-written for the bad ones
    assert abs(probe(out_dir / "b.mp4").duration_s - 1.5) < 0.15
    captured = capsys.readouterr()
    skipped = [line.split("nwt generate: skipped ", 1)[1] for line in captured.err.splitlines()
               if "nwt generate: skipped " in line]  # (after a progress bar's carriage returns)
    assert len(skipped) == len(bad)
    for name, reason in bad.items():
        line = next(line for line in skipped if line.startswith(f"{tmp_path}/{name}: "))
        assert reason in line, (name, line)
    assert f"wrote 2 of 6 videos to {out_dir}; failed: " in captured.out
    # all good: exit 0
    assert main(["generate", "--audio", *map(str, good), "--out-dir", str(out_dir)]) == 0


def test_audio_list_and_format(checkout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "one.wav", 1.0, 2)
    write_wav(tmp_path / "two.wav", 1.0, 3)
    (tmp_path / "list.txt").write_text("# my talks\none.wav\n\n  two.wav  \n")
    models = ["--dvae", str(checkout / "models/dvae/dvae.pt"), "--prior", str(checkout / "models/prior/prior.pt")]
    assert main(["generate", "--audio-list", "list.txt", "--out-dir", "out", "--format", "webm", *models,
                 *EXPLICIT]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.webm", "two.webm"]
    assert probe(tmp_path / "out/one.webm").has_audio


@pytest.mark.parametrize("args, message", [
    (["--audio", "a.wav", "b.wav", "--out", "o.mp4"], "--out names one video"),
    (["--audio", "a.wav", "--out", "o.mp4", "--out-dir", "d"], "one of the two"),
    (["--audio", "a.wav"], "one of the two"),
    ([], "no audio"),
    (["--audio-list", "none.txt", "--out-dir", "d"], "--audio-list none.txt does not exist"),
    (["--audio", "x/a.wav", "y/a.mp3", "--out-dir", "d"], "same file stem"),
    (["--audio", "a.wav", "--out", "o.mp4", "--format", "webm"], "--out names one video"),
])
def test_usage_errors_exit_2(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", *args, *EXPLICIT]) == 2
    assert message in capsys.readouterr().err


def test_single_file_form_as_before(checkout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(checkout)
    wav = write_wav(tmp_path / "s.wav")
    out = tmp_path / "single.mp4"
    assert main(["generate", "--audio", str(wav), "--out", str(out), "--episode", "ep0"]) == 0
    assert out.is_file() and f"wrote {out}: 1.0 s of video" in capsys.readouterr().out
    assert main(["generate", "--audio", str(tmp_path / "missing.wav"), "--out", str(out)]) == 2  # as before: 2


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_generated_videos_follow_the_umask(checkout, tmp_path, monkeypatch, umask, mode):
    monkeypatch.chdir(checkout)
    wav = write_wav(tmp_path / "s.wav")
    old = os.umask(umask)
    try:
        assert main(["generate", "--audio", str(wav), "--out", str(tmp_path / "one.mp4")]) == 0
        assert main(["generate", "--audio", str(wav), "--out-dir", str(tmp_path / "many"), "--format", "webm"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "one.mp4").stat().st_mode & 0o777 == mode
    assert (tmp_path / "many/s.webm").stat().st_mode & 0o777 == mode
