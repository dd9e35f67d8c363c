"""Model bundles (nwt.bundle), the store and resolution order (nwt.store), `nwt export`,
`nwt models` and the export stage, on tiny real checkpoints and shards (tests/tiny_checkout.py)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO
from tiny_checkout import GREY, UNSEEN, export_bundle, make_checkout, write_wav

import nwt
from nwt import store
from nwt.bundle import FORMAT_VERSION, Bundle, load_bundle
from nwt.cli import main
from nwt.generate import Generator, default_sampling
from nwt.params import WHOLE_FRAME, SamplingParams, load_params

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def bundle(checkout, tmp_path_factory) -> Path:
    """`nwt export --out` run in the checkout."""
    return export_bundle(checkout, tmp_path_factory.mktemp("bundle") / "tiny.pt")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty model store of this test's own."""
    monkeypatch.setenv("NWT_HOME", str(tmp_path / "nwt_home"))
    return tmp_path / "nwt_home"


def test_bundle_holds_everything_and_loads_weights_only(bundle, checkout):
    payload = torch.load(bundle, weights_only=True)  # plain containers and tensors only
    assert payload["format"] == "nwt-bundle" and payload["format_version"] == FORMAT_VERSION == 1
    dvae_ckpt = torch.load(checkout / "models/dvae/dvae.pt", weights_only=True)
    prior_ckpt = torch.load(checkout / "models/prior/prior.pt", weights_only=True)
    for part, ckpt in (("dvae", dvae_ckpt), ("prior", prior_ckpt)):
        assert payload[part]["dims"] == ckpt["dims"]
        assert all(torch.equal(payload[part]["state_dict"][k], v) for k, v in ckpt["state_dict"].items())
    episodes = payload["episodes"]
    assert episodes["ids"] == ["ep0", "ep1"] and episodes["unseen_ids"] == UNSEEN
    # one reference frame per episode: ep0's first train clip (grey 40, not its second, 90); ep1, held out: its
    # first unseen clip
    assert episodes["reference_ids"] == ["ep0", "ep1"]
    frames = episodes["reference_frames"]
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (2, 64, 56, 3)
    for i, episode in enumerate(episodes["reference_ids"]):
        assert abs(float(frames[i].float().mean()) - GREY[episode]) < 3, episode
    params = load_params(checkout / "params.yaml")
    assert SamplingParams(**payload["sampling"]) == default_sampling(params)
    assert payload["timing"] == {"fps": 25, "sample_rate": 16000}
    prov = payload["provenance"]
    assert prov["nwt_version"] == nwt.__version__ and prov["created"].endswith("+00:00")
    assert (prov["dvae_fingerprint"], prov["prior_fingerprint"]) == ("dvae-test", "prior-test")
    assert prov["source"] == str((checkout / "models").resolve())
    assert len(prov["params_hash"]) == 16 and prov["params"]["evaluate"]["guidance"] == params.evaluate.guidance
    assert bundle.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_bundle_generates_what_its_checkpoints_generate(bundle, checkout):
    from test_generate import speech

    from_bundle = load_bundle(bundle).generator()
    from_ckpts = Generator(checkout / "models/dvae/dvae.pt", checkout / "models/prior/prior.pt",
                           references=load_bundle(bundle).references())  # the primers `nwt export` chose
    assert from_bundle.references.keys() == {"ep0", "ep1"}
    assert from_bundle.sampling_defaults == default_sampling(load_params(checkout / "params.yaml"))
    assert from_ckpts.sampling_defaults is None and from_bundle.episode_ids == from_ckpts.episode_ids
    sampling = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, guidance=1.0, guidance_box=WHOLE_FRAME)
    a = from_bundle.from_audio(speech(1.0), "ep0", sampling=sampling, seed=3)
    b = from_ckpts.from_audio(speech(1.0), "ep0", sampling=sampling, seed=3)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.frames, b.frames)


def test_generate_from_a_bundle_outside_the_checkout(bundle, tmp_path, monkeypatch, capsys):
    """No params.yaml, no models/ here: the bundle gives the models and the sampling defaults."""
    monkeypatch.chdir(tmp_path)
    wav = write_wav(tmp_path / "speech.wav")
    assert main(["generate", "--model", str(bundle), "--audio", "speech.wav", "--out", "video.mp4",
                 "--episode", "ep0"]) == 0
    from nwt.data.media import probe

    info = probe(tmp_path / "video.mp4")
    assert info.has_video and info.has_audio and (info.width, info.height) == (64, 64)
    assert "wrote video.mp4" in capsys.readouterr().out
    assert main(["generate", "--model", str(bundle), "--audio", str(wav), "--out", "v.mp4", "--episode", "zz"]) == 2
    assert "unknown episode 'zz'" in capsys.readouterr().err


def test_a_bad_bundle_is_a_clear_error(bundle, checkout, tmp_path, capsys):
    payload = torch.load(bundle, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": 2}, newer)
    with pytest.raises(ValueError, match="format version 2.*reads version 1 only"):
        load_bundle(newer)
    with pytest.raises(ValueError, match="not an nwt model bundle"):
        load_bundle(checkout / "models/dvae/dvae.pt")  # a checkpoint
    junk = tmp_path / "junk.pt"
    junk.write_text("not a torch file")
    with pytest.raises(ValueError, match="cannot read .* as an nwt model bundle"):
        load_bundle(junk)
    wav = write_wav(tmp_path / "s.wav")
    assert main(["generate", "--model", str(newer), "--audio", str(wav), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "format version 2" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "none.pt"), "--audio", str(wav),
                 "--out", str(tmp_path / "o.mp4")]) == 2
    assert "no such model bundle file" in capsys.readouterr().err


def test_export_into_the_store_list_default_remove(checkout, home, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(checkout)
    assert main(["models"]) == 0
    assert "no models in" in capsys.readouterr().out
    assert main(["export", "--name", "first"]) == 0
    assert (home / "models/first.pt").is_file()
    assert "'first' is in the store (the default)" in capsys.readouterr().out  # the only model is the default
    assert main(["export", "--name", "second"]) == 0
    capsys.readouterr()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " MB " in line]
    assert [r.split()[0] for r in rows] == ["first", "second"]  # two models, no default: no mark
    assert all(str((checkout / "models").resolve()) in r for r in rows)
    assert "nwt generate here uses: checkpoints models/dvae/dvae.pt" in out  # the checkout comes before the store
    assert main(["models", "--default", "second"]) == 0
    capsys.readouterr()
    assert main(["models"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " MB " in line]
    assert rows[1].startswith("* second") and rows[0].startswith("  first")
    assert main(["models", "--default", "nope"]) == 2
    assert main(["models", "--remove", "second"]) == 0
    assert store.names() == ["first"] and store.default_name() == "first"  # the only one left
    assert main(["export", "--name", "bad/name"]) == 2
    assert main(["export"]) == 2  # neither --out nor --name
    assert "give --out PATH" in capsys.readouterr().err


def test_models_info_and_looks(bundle, home, tmp_path, capsys):
    sheet = tmp_path / "looks.png"
    assert main(["models", "--info", str(bundle), "--looks", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "episodes (--episode ID): ep0, ep1" in out and "the <unk> look): ep1" in out
    assert "prior prior-test" in out and "reference frames: 2" in out
    image = cv2.imread(str(sheet))
    assert image.shape == (64 + 20, 2 * 56, 3)
    assert abs(float(image[:64, :56].mean()) - GREY["ep0"]) < 3 and abs(float(image[:64, 56:].mean()) - 200) < 3
    assert main(["models", "--looks", str(sheet)]) == 2  # --looks needs --info


def test_resolution_order(bundle, checkout, home, tmp_path, monkeypatch):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(FileNotFoundError) as err:  # nothing anywhere: say how to get a model
        store.resolve()
    assert "dvc repro" in str(err.value) and "nwt export --name NAME" in str(err.value)
    store.models_dir().mkdir(parents=True)
    (store.models_dir() / "one.pt").write_bytes(bundle.read_bytes())
    assert store.resolve().bundle == store.path_of("one")  # 4. the store's only model
    (store.models_dir() / "two.pt").write_bytes(bundle.read_bytes())
    with pytest.raises(FileNotFoundError, match="no default"):
        store.resolve()
    store.set_default("two")
    assert store.resolve().bundle == store.path_of("two")  # 4. the store's default
    (empty / "models/bundle").mkdir(parents=True)
    (empty / "models/bundle/nwt.pt").write_bytes(bundle.read_bytes())
    assert store.resolve().bundle == Path("models/bundle/nwt.pt")  # 3. the checkout's exported bundle
    monkeypatch.chdir(checkout)
    choice = store.resolve()  # 3. the checkout's checkpoints come first
    assert (choice.bundle, choice.dvae, choice.prior) == (None, Path("models/dvae/dvae.pt"),
                                                         Path("models/prior/prior.pt"))
    monkeypatch.setenv("NWT_MODEL", "one")
    assert store.resolve().bundle == store.path_of("one")  # 2. $NWT_MODEL beats the checkout
    assert store.resolve(str(bundle)).bundle == bundle  # 1. --model beats $NWT_MODEL
    assert store.resolve(dvae="x.pt").dvae == Path("x.pt")  # 1. so do --dvae / --prior
    with pytest.raises(ValueError, match="not both"):
        store.resolve("one", dvae="x.pt")
    monkeypatch.setenv("NWT_MODEL", "nope")
    with pytest.raises(FileNotFoundError, match=r"\$NWT_MODEL 'nope': no model of that name.*one, two"):
        store.resolve()
    monkeypatch.delenv("NWT_MODEL")
    half = tmp_path / "half"
    (half / "models/dvae").mkdir(parents=True)
    (half / "models/dvae/dvae.pt").write_bytes(b"")
    monkeypatch.chdir(half)
    store.remove("one")
    store.remove("two")
    with pytest.raises(FileNotFoundError, match="models/prior/prior.pt does not: `dvc repro train_prior`"):
        store.resolve()


def test_generate_by_store_name_from_anywhere(bundle, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store.models_dir().mkdir(parents=True)
    (store.models_dir() / "mine.pt").write_bytes(bundle.read_bytes())
    write_wav(tmp_path / "s.wav")
    assert main(["generate", "--audio", "s.wav", "--out", "default.mp4"]) == 0  # the only model: the default
    assert main(["generate", "--model", "mine", "--audio", "s.wav", "--out", "named.mp4"]) == 0
    monkeypatch.setenv("NWT_MODEL", "mine")
    assert main(["generate", "--audio", "s.wav", "--out", "env.mp4"]) == 0
    assert all((tmp_path / f).stat().st_size > 0 for f in ("default.mp4", "named.mp4", "env.mp4"))


def test_export_without_the_pipeline_extra_says_what_to_install(checkout, tmp_path, monkeypatch, capsys):
    """In a core-only install the shards' reader (webdataset) is missing: `nwt export` says so."""
    monkeypatch.delitem(sys.modules, "nwt.data.shards", raising=False)
    monkeypatch.setitem(sys.modules, "webdataset", None)  # import webdataset → ImportError
    monkeypatch.chdir(checkout)
    assert main(["export", "--out", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err
    assert "needs the pipeline extra (webdataset is not installed)" in err and "nwt[pipeline]" in err
    assert not (tmp_path / "b.pt").exists()


def test_export_stage(checkout, tmp_path):
    """pipeline/export.py, run as dvc runs it (from the checkout): models/bundle/nwt.pt and its metrics."""
    work = tmp_path / "checkout"
    shutil.copytree(checkout, work)
    subprocess.run([sys.executable, str(REPO / "pipeline/export.py")], cwd=work, check=True, capture_output=True)
    bundle = load_bundle(work / "models/bundle/nwt.pt")
    assert bundle.provenance["source"] == "dvc repro" and bundle.episode_ids == ["ep0", "ep1"]
    metrics = json.loads((work / "reports/export/metrics.json").read_text())
    assert metrics["episodes"] == 2 and metrics["reference_frames"] == 2 and metrics["bundle_mb"] > 0


def test_help_lists_the_commands_each_with_an_example():
    from nwt.cli import build_parser

    parser = build_parser()
    top = parser.format_help()
    commands = parser._subparsers._group_actions[0].choices
    assert {"generate", "export", "models"} <= set(commands)
    for name, sub in commands.items():
        assert f"    {name} " in top, name  # listed with its one-line help
        help_text = sub.format_help()
        assert "examples:" in help_text and f"\n  nwt {name} " in help_text, name
    resolution = commands["generate"].format_help().replace("\n", " ")
    for step in ("--model NAME_OR_PATH", "$NWT_MODEL", "the checkout you stand in", "the default (or only) model"):
        assert step in " ".join(resolution.split()), step


def test_a_bundle_from_before_the_guidance_box_guides_the_whole_frame(bundle):
    """Bundles exported before evaluate.guidance_region have no guidance_box: they keep guiding the
    whole frame, as they were evaluated; new ones carry params.yaml's box (the mouth)."""
    payload = load_bundle(bundle).payload
    assert tuple(payload["sampling"]["guidance_box"]) != WHOLE_FRAME
    old = dict(payload, sampling={k: v for k, v in payload["sampling"].items() if k != "guidance_box"})
    assert Bundle(old).sampling.guidance_box == WHOLE_FRAME
