"""The Python API (nwt/api.py, issue 21 point 4): `nwt.load_model` resolves as `nwt generate`, a
Model generates into a file or into memory with the command's keywords and codes, the README's
example runs as written, and no pipeline stage reaches the API (`import nwt` stays light)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO
from test_dvc_deps import STAGES, reached_files
from tiny_checkout import export_bundle, make_checkout, write_wav

import nwt
from nwt import store
from nwt.cli import main
from nwt.data.media import iter_frames, probe

torch.set_num_threads(1)
API = ("Clip", "Model", "Video", "load_model")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def bundle(checkout, tmp_path_factory) -> Path:
    return export_bundle(checkout, tmp_path_factory.mktemp("bundle") / "tiny.pt")


@pytest.fixture(scope="module")
def model(bundle):
    return nwt.load_model(bundle)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NWT_HOME", str(tmp_path / "nwt_home"))
    return tmp_path / "nwt_home"


def test_import_nwt_loads_nothing_until_the_api_is_used():
    code = ("import sys, nwt\n"
            "assert {m for m in sys.modules if m.startswith('nwt')} == {'nwt'}, sorted(sys.modules)\n"
            "assert 'torch' not in sys.modules\n"
            "from nwt import load_model\n"
            "assert 'nwt.api' in sys.modules and load_model is nwt.load_model\n"
            "try:\n    nwt.no_such_name\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "module 'nwt' has no attribute 'no_such_name'" in out


def _api_uses(path: Path) -> list[str]:
    """Where a file imports nwt.api or uses an API name of nwt (nwt.load_model, from nwt import Model)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "nwt" and any(a.name in API for a in node.names):
            found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                "nwt.api" in name for name in [getattr(node, "module", None) or ""] + [a.name for a in node.names]):
            found.append(f"{path.name}:{node.lineno}")
        elif (isinstance(node, ast.Attribute) and node.attr in API and isinstance(node.value, ast.Name)
              and node.value.id == "nwt"):
            found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.Constant) and node.value == "nwt.api":
            found.append(f"{path.name}:{node.lineno}")
    return found


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_stage_reaches_the_api(stage):
    """nwt/__init__.py imports nwt.api by name on first use of nwt.load_model (importlib), which the
    deps check (tests/test_dvc_deps.py) does not follow: that is right only while no stage uses the
    API, so that nwt/api.py (and what it imports) is never a dependency a stage's deps leave out."""
    uses = [use for f in reached_files(REPO / STAGES[stage][0]) if f.name != "__init__.py" or f.parent.name != "nwt"
            for use in _api_uses(f)]
    assert not uses, f"stage {stage} reaches the Python API ({uses}): list nwt/api.py and its imports in its deps"
    assert (REPO / "nwt/api.py").resolve() not in reached_files(REPO / STAGES[stage][0])
    assert _api_uses(REPO / "nwt/__init__.py")  # the checker sees the lazy import where it is


def test_generate_writes_the_video_the_command_writes(model, bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "speech.wav", 1.2)
    video = model.generate("speech.wav", "api.mp4", episode="ep0", seed=3, style_seed=1)
    assert video.path == Path("api.mp4") and video.seconds == pytest.approx(1.2)
    assert video.rtf > 0 and video.wall_s > 0 and video.codes.shape == (30, 4, 4, 2)
    assert main(["generate", "--model", str(bundle), "--audio", "speech.wav", "--out", "cli.mp4", "--episode", "ep0",
                 "--seed", "3", "--style-seed", "1"]) == 0
    api, cli = (np.stack(list(iter_frames(p, 25))) for p in ("api.mp4", "cli.mp4"))
    assert api.shape == cli.shape == (30, 64, 64, 3) and np.array_equal(api, cli)
    info = probe("api.mp4")
    assert info.has_audio and info.duration_s == pytest.approx(1.2, abs=0.05)


def test_frames_in_memory(model, tmp_path):
    wav = write_wav(tmp_path / "speech.wav", 1.0, seed=1)
    clip = model.generate_frames(wav, episode="ep1", seed=5)
    assert clip.frames.shape == (25, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (16000,) and clip.audio.dtype == np.float32
    assert (clip.fps, clip.sample_rate, clip.seconds) == (25, 16000, 1.0) and clip.rtf > 0
    # the same generation as into a file, and from an array as from its file
    video = model.generate(wav, tmp_path / "v.webm", episode="ep1", seed=5)
    assert np.array_equal(clip.codes, video.codes)
    samples, sr = soundfile.read(wav, dtype="float32")
    same = model.generate_frames(samples, sample_rate=sr, episode="ep1", seed=5)
    assert np.array_equal(same.frames, clip.frames)
    # the visible mark unless mark=False, and nothing else differs
    unmarked = model.generate_frames(samples, episode="ep1", seed=5, mark=False)
    differs = np.argwhere((unmarked.frames != clip.frames).any(axis=(0, 3)))
    assert len(differs) and differs[:, 0].min() >= 64 - 20 and differs[:, 1].min() >= 64 - 92
    # saved with the audio and the provenance tag
    out = clip.save(tmp_path / "clip.mp4")
    assert probe(out).has_audio and probe(out).has_video
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=comment", "-of", "csv=p=0",
                           str(out)], capture_output=True, text=True).stdout
    assert "generated by nwt" in tags and "synthetic media" in tags


def test_keywords_are_the_flags(model, tmp_path):
    audio = soundfile.read(write_wav(tmp_path / "s.wav", 0.6), dtype="float32")[0]
    assert model.sampling.temperature > 0  # the bundle's defaults (params.yaml's evaluate at export)
    greedy = [model.generate_frames(audio, seed=s, temperature=0).codes for s in (1, 2)]
    assert np.array_equal(*greedy)  # temperature 0 is greedy: the seed no longer matters
    sampled = [model.generate_frames(audio, seed=s).codes for s in (1, 2)]
    assert not np.array_equal(*sampled)
    assert not np.array_equal(model.generate_frames(audio, seed=1, style_seed=4).codes, sampled[0])
    # the bundle's guidance (5) is a default for a prior that cannot be guided: 1, as in nwt generate; asked
    # for explicitly, it is an error that says why
    assert model.sampling.guidance != 1
    with pytest.raises(ValueError, match="guidance"):
        model.generate_frames(audio, guidance=3.0)
    with pytest.raises(ValueError, match="unknown episode 'zz'"):
        model.generate(audio, tmp_path / "x.mp4", episode="zz")
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(ValueError, match="44100 Hz: this model takes 16000 Hz"):
        model.generate_frames(audio, sample_rate=44100)
    with pytest.raises(ValueError, match="silent"):
        model.generate_frames(np.zeros(16000, np.float32))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.generate_frames(tmp_path / "missing.wav")


def test_load_model_resolves_as_the_command(bundle, checkout, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model to generate with"):
        nwt.load_model()
    store.models_dir().mkdir(parents=True)
    (store.models_dir() / "mine.pt").write_bytes(bundle.read_bytes())
    m = nwt.load_model()  # the store's only model
    assert m.source.startswith(f"bundle {store.path_of('mine')}") and m.episodes == ["ep0", "ep1"]
    assert "2 episodes, 25 fps, 16000 Hz" in repr(m)
    assert nwt.load_model("mine").source.endswith("(nwt.load_model, from the store)")
    assert nwt.load_model(str(bundle)).sampling == m.sampling
    with pytest.raises(FileNotFoundError, match="nwt.load_model 'nope': no model of that name.*mine"):
        nwt.load_model("nope")
    monkeypatch.chdir(checkout)  # the checkout's checkpoints come first, with its params.yaml's sampling
    from nwt.generate import default_sampling
    from nwt.params import load_params

    here = nwt.load_model()
    assert here.source.startswith("checkpoints models/dvae/dvae.pt")
    assert here.sampling == default_sampling(load_params("params.yaml"))
    monkeypatch.setenv("NWT_MODEL", "mine")
    assert nwt.load_model().source.startswith(f"bundle {store.path_of('mine')} ($NWT_MODEL")


def readme_python() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```$", (REPO / "README.md").read_text(), re.S | re.M)
    assert len(blocks) == 1, "the README has one Python example (### From Python)"
    return blocks[0]


def test_readme_example_runs_as_written(bundle, home, tmp_path, monkeypatch, capsys):
    """The README's Python block, exec'd as it stands, in a folder with a speech.wav and a store
    whose model `mine` is a tiny bundle."""
    code = readme_python()
    assert 'nwt.load_model("mine")' in code
    store.models_dir().mkdir(parents=True)
    (store.models_dir() / "mine.pt").write_bytes(bundle.read_bytes())
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "speech.wav", 1.0)
    exec(compile(code, str(REPO / "README.md"), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "video.mp4: 1.0 s in" in out and "(25, 64, 64, 3) (16000,)" in out
    for name in ("video.mp4", "styled.webm"):
        info = probe(tmp_path / name)
        assert info.has_video and info.has_audio, name
