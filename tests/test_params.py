"""params.yaml is the only place a default lives: typed sections, strict loading, no defaults elsewhere."""
import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from nwt.models.dvae import DVAEDims
from nwt.models.prior import PriorDims
from nwt.models.sync_expert import SyncDims
from nwt.params import Params, ParamsError, load_params, with_changes

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_params_yaml_loads_into_typed_frozen_sections():
    p = load_params(REPO / "params.yaml")
    assert isinstance(p, Params) and p.prior.layers == 4 and isinstance(p.train_dvae.lr, float)
    assert p.media.timing.samples_per_frame == p.media.sample_rate // p.media.fps
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.prior.layers = 24


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r["prior"].pop("layers"), "prior: missing key(s) prior.layers"),
    (lambda r: r["train_dvae"].update(lr_typo=1.0), "train_dvae: unknown key(s) train_dvae.lr_typo"),
    (lambda r: r["prior"].update(layers="four"), "prior.layers must be an integer, got 'four'"),
    (lambda r: r["prior"].update(layers=True), "prior.layers must be an integer"),
    (lambda r: r["train_dvae"].update(cpu_bf16="yes"), "train_dvae.cpu_bf16 must be true or false"),
    (lambda r: r["segment"]["whisperx"].pop("model"), "segment.whisperx: missing key(s) segment.whisperx.model"),
    (lambda r: r["faces"].update(backend="mtcnn"), "faces.backend must be one of 'haar', 'dlib', 'face_alignment'"),
    (lambda r: r.pop("tokenize"), "params.yaml: missing key(s) tokenize"),
    (lambda r: r["train_dvae"].update(ema_decay=1.0), "train_dvae.ema_decay must be in [0, 1)"),
])
def test_a_missing_unknown_or_ill_typed_key_names_section_and_key(tmp_path, mutate, message):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, mutate))
    assert message in str(err.value)


def test_an_integer_is_a_float_where_a_float_is_expected(tmp_path):
    p = load_params(_write(tmp_path, lambda r: r["prior"].update(lr=1)))
    assert p.prior.lr == 1.0 and isinstance(p.prior.lr, float)


def test_with_changes_checks_like_loading():
    p = load_params(REPO / "params.yaml")
    assert with_changes(p.prior, layers=24).layers == 24 and p.prior.layers == 4
    with pytest.raises(ParamsError, match="download.synthetic.episodes must be an integer"):
        with_changes(p.download.synthetic, episodes="6")
    with pytest.raises(ParamsError, match="unknown key"):
        with_changes(p.prior, layer=24)


@pytest.mark.parametrize("cls", [DVAEDims, PriorDims, SyncDims])
def test_model_dims_have_no_defaults(cls):
    defaulted = [f.name for f in dataclasses.fields(cls)
                 if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert defaulted == []


def test_params_sections_have_no_defaults():
    seen, todo = set(), [Params]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (cls, f.name)
            hint = hints[f.name]
            if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a list of X in params.yaml
                hint = typing.get_args(hint)[0]
            if dataclasses.is_dataclass(hint) and hint not in seen:
                todo.append(hint)
    assert len(seen) == 16  # Params, its 12 sections, download.synthetic, segment.whisperx, a voices.voices entry


def test_no_defaults_dict_anywhere_in_the_code():
    """The trainers once repeated params.yaml in DEFAULTS dicts; nothing may again."""
    offenders = []
    for path in [*REPO.glob("nwt/**/*.py"), *REPO.glob("pipeline/*.py"), *REPO.glob("scripts/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                targets = node.targets
            else:
                targets = [node.target] if isinstance(node, ast.AnnAssign) else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for t in targets
                          if isinstance(t, ast.Name) and t.id.endswith("DEFAULTS")]
    assert offenders == []


def test_sampling_guides_the_sync_mouth_box_of_the_framing_or_the_whole_frame():
    import dataclasses as dc

    from nwt.generate import default_sampling
    from nwt.geometry import sync_mouth_box
    from nwt.params import WHOLE_FRAME, guidance_where

    p = load_params(REPO / "params.yaml")
    assert p.evaluate.guidance_region == "mouth"
    (r0, r1), (c0, c1) = sync_mouth_box(p.faces.face_scale, p.faces.centre_shift)
    assert default_sampling(p).guidance_box == (r0, r1, c0, c1) and 0 < r0 < r1 < 1
    wider = dc.replace(p, faces=with_changes(p.faces, face_scale=3.5, centre_shift=0.88))
    assert default_sampling(wider).guidance_box != default_sampling(p).guidance_box  # follows the framing
    everywhere = dc.replace(p, evaluate=with_changes(p.evaluate, guidance_region="frame"))
    assert default_sampling(everywhere).guidance_box == WHOLE_FRAME and guidance_where(WHOLE_FRAME) == "everywhere"
    assert "unguided elsewhere" in guidance_where(default_sampling(p).guidance_box)
    with pytest.raises(ParamsError):
        with_changes(p.evaluate, guidance_region="face")
