"""params.yaml, typed: one frozen dataclass per section, and params.yaml the only place a default
lives.

`load_params()` reads the file and builds a `Params`; every section is a frozen dataclass with no
field defaults, so a key missing from params.yaml, a key the code does not know, or a value of
the wrong type stops with a `ParamsError` naming the section and key. Integers are accepted where
a float is expected (YAML writes `1` for 1.0); nothing else is converted. Stage scripts, the
trainers, the CLI and the benchmarks read these objects; a test that needs other values builds
them with `with_changes(section, key=value)`, which checks the same way.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from nwt.constants import Timing

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing a key, has one the code does not know, or a value of the wrong type."""


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class MediaParams:
    fps: int
    sample_rate: int

    @property
    def timing(self) -> Timing:
        return Timing(self.fps, self.sample_rate)


@dataclass(frozen=True)
class SyntheticParams:
    episodes: int
    seconds: float
    seed: int
    identities: int


@dataclass(frozen=True)
class DownloadParams:
    source: Literal["synthetic", "manifest"]
    manifest: str
    synthetic: SyntheticParams


@dataclass(frozen=True)
class ShotsParams:
    detector: Literal["adaptive", "content"]
    threshold: float
    min_shot_s: float


@dataclass(frozen=True)
class FacesParams:
    backend: Literal["haar", "dlib", "face_alignment"]
    stride: int
    min_face_px: int
    face_scale: float
    centre_shift: float
    smooth_s: float
    max_motion: float


@dataclass(frozen=True)
class WhisperxParams:
    python: str
    model: str
    language: str
    device: Literal["auto", "cuda", "cpu"]
    compute_type: str
    batch_size: int
    model_dir: str
    vad_method: Literal["pyannote", "silero"]


@dataclass(frozen=True)
class SegmentParams:
    backend: Literal["auto", "webrtcvad", "silero", "pocketsphinx", "whisperx"]
    no_transcript: Literal["recognize", "vad"]
    vad: Literal["silero", "webrtcvad"]
    vad_aggressiveness: int
    vad_threshold: float
    min_clip_s: float
    max_clip_s: float
    target_clip_s: float
    min_pause_s: float
    max_gap_s: float
    whisperx: WhisperxParams


@dataclass(frozen=True)
class ShardParams:
    unseen_episodes: int
    val_fraction: float
    test_fraction: float
    clips_per_shard: int


@dataclass(frozen=True)
class TrainDVAEParams:
    seed: int
    steps: int
    batch_size: int
    crop_height: int
    crop_width: int
    lr: float
    weight_decay: float
    warmup_steps: int
    min_lr_fraction: float
    grad_clip: float
    ema_decay: float
    decoder_phase_ema_decay: float
    mse_weight: float
    channels: int
    max_mult: int
    blocks: int
    downsample: int
    stem: int
    norm: Literal["channel", "group"]
    num_codes: int
    heads: int
    code_dim: int
    temperature: float
    logit_scale: float
    episode_embedding: bool
    episode_dim: int
    episode_dropout: float
    restart_every: int
    restart_until_fraction: float
    restart_min_usage: float
    adv_weight: float
    fm_weight: float
    adv_start_fraction: float
    disc_channels: int
    disc_scales: int
    disc_lr: float
    decoder_phase_fraction: float
    decoder_phase_adv_weight: float
    decoder_phase_lr: float
    cpu_bf16: bool
    checkpoint_every: int
    log_every: int
    val_every: int
    val_quick_frames: int
    val_frame_stride: int
    val_max_frames: int
    eval_batch_size: int
    shuffle_buffer: int

    def __post_init__(self) -> None:
        for key in ("decoder_phase_fraction", "ema_decay", "decoder_phase_ema_decay"):
            value = getattr(self, key)
            if not 0 <= value < 1:  # an EMA decay of 1 freezes the exported weights at initialisation
                raise ParamsError(f"train_dvae.{key} must be in [0, 1), got {value}")


@dataclass(frozen=True)
class TokenizeParams:
    batch_size: int


@dataclass(frozen=True)
class PriorParams:
    seed: int
    mode: Literal["far", "mar"]
    layers: int
    dim: int
    heads: int
    audio_layers: int
    audio_window: int
    context_frames: int
    code_dim: int
    spatial_dim: int
    logit_scale: float
    window_frames: int
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    min_lr_fraction: float
    weight_decay: float
    grad_clip: float
    prev_frame_dropout: float
    code_noise: float
    episode_dropout: float
    audio_dropout: float
    changed_code_weight: float
    audio_skip: int
    sync_dim: int
    sync_weight: float
    codebook_init: bool
    checkpoint_every: int
    log_every: int
    style_dim: int
    style_hidden: int
    style_kl_weight: float
    style_free_bits: float
    style_kl_anneal_steps: int
    mar_layers: int
    mar_dim: int
    mar_heads: int
    aug_mel_warp: float
    aug_mel_eq: float
    aug_mel_gain: float
    aug_mel_noise: float
    aug_reverb: float
    aug_tempo: float


@dataclass(frozen=True)
class SamplingParams:
    """How the prior draws codes: what `nwt generate`, evaluate and episode control use."""

    temperature: float
    top_k: int
    top_p: float
    guidance: float
    # where guidance acts, crop fractions (row0, row1, col0, col1); WHOLE_FRAME: everywhere.
    # Outside it the codes are drawn with the audio but unguided (g = 1): nwt.models.prior.Prior.sample_iter
    guidance_box: tuple[float, ...]


WHOLE_FRAME = (0.0, 1.0, 0.0, 1.0)  # guidance_box of guidance everywhere (bundles older than the box)


def guidance_where(box: tuple[float, ...]) -> str:
    """Where a guidance_box guides, in words."""
    if tuple(box) == WHOLE_FRAME:
        return "everywhere"
    r0, r1, c0, c1 = box
    return f"on rows {r0:g}–{r1:g}, columns {c0:g}–{c1:g} of the frame; unguided elsewhere"


@dataclass(frozen=True)
class EvaluateParams:
    samples: int
    control_clips: int
    syncnet_weights: str
    fid_weights: str
    fid_frame_stride: int
    fvd_weights: str
    temperature: float
    top_k: int
    top_p: float
    guidance: float
    seed: int
    codec_anchor_crf: float
    seeds: int
    real_speech_dir: str
    guidance_region: Literal["mouth", "frame"]


@dataclass(frozen=True)
class TrainSyncParams:
    seed: int
    steps: int
    batch_size: int
    anchors_per_clip: int
    spacing_jitter: int
    min_offset: int
    max_offset: int
    lr: float
    warmup_steps: int
    min_lr_fraction: float
    weight_decay: float
    grad_clip: float
    logit_scale: float
    bce_weight: float
    height: int
    width: int
    channels: int
    audio_channels: int
    embed_dim: int
    dropout: float
    aug_shift_px: int
    aug_brightness: float
    aug_contrast: float
    aug_audio_gain: float
    aug_freq_mask: int
    aug_blur_sigma: float
    aug_noise: float
    aug_mel_warp: float
    aug_mel_eq: float
    aug_mel_noise: float
    aug_reverb: float
    shift_range: int
    recover_tolerance: int
    checkpoint_every: int
    log_every: int
    eval_batch_size: int

    def __post_init__(self) -> None:
        if self.min_offset < 1 or self.max_offset < self.min_offset:
            raise ParamsError(f"train_sync: need 1 ≤ min_offset ≤ max_offset, got {self.min_offset}, {self.max_offset}")


@dataclass(frozen=True)
class VoiceParams:
    """One held-out voice of the `voices` stage: a speech engine's voice never heard in training."""

    engine: Literal["espeak", "flite", "festival"]
    voice: str
    sex: Literal["f", "m"]


@dataclass(frozen=True)
class VoicesParams:
    seed: int
    sentences_per_voice: int
    lead_s: float
    tail_s: float
    clips_per_shard: int
    voices: tuple[VoiceParams, ...]


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml, one attribute per section (named after the dvc.yaml stages)."""

    media: MediaParams
    download: DownloadParams
    shots: ShotsParams
    faces: FacesParams
    segment: SegmentParams
    shard: ShardParams
    train_dvae: TrainDVAEParams
    tokenize: TokenizeParams
    prior: PriorParams
    evaluate: EvaluateParams
    train_sync: TrainSyncParams
    voices: VoicesParams


# ----------------------------------------------------------------------------- loading
def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """params.yaml → Params (stages run from the repository root, as `dvc repro` does)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run stages from the repository root (dvc repro does)")
    with path.open() as f:
        return build(Params, yaml.safe_load(f) or {}, where="")


T = typing.TypeVar("T")


def build(cls: type[T], data: Any, where: str) -> T:
    """A section dataclass from its mapping; every field required, no unknown keys, types checked."""
    label = where or "params.yaml"
    if not isinstance(data, dict):
        raise ParamsError(f"{label} must be a mapping of keys, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ParamsError(f"{label}: unknown key(s) {', '.join(_join(where, k) for k in unknown)}")
    missing = [k for k in names if k not in data]
    if missing:
        raise ParamsError(f"{label}: missing key(s) {', '.join(_join(where, k) for k in missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _value(hints[k], data[k], _join(where, k)) for k in names})


def with_changes(section: T, **changes: Any) -> T:
    """A copy of a section with some keys changed, checked like a loaded one (tests, tools)."""
    data = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    data.update(changes)
    return build(type(section), data, where=_section_names().get(type(section), type(section).__name__))


def as_dict(section: Any) -> dict[str, Any]:
    """Plain nested dict of a section (fingerprints, metrics, logging)."""
    return dataclasses.asdict(section)


def _section_names() -> dict[type, str]:
    """Section class → its dotted name in params.yaml (e.g. SyntheticParams → download.synthetic)."""
    names: dict[type, str] = {}

    def walk(cls: type, prefix: str) -> None:
        for name, typ in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(typ):
                names[typ] = _join(prefix, name)
                walk(typ, names[typ])

    walk(Params, "")
    return names


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _value(typ: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(typ):
        if dataclasses.is_dataclass(value) and isinstance(value, typ):
            return value
        return build(typ, value, key)
    if typing.get_origin(typ) is Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            raise ParamsError(f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key} must be a number, got {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key} must be an integer, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key} must be true or false, got {value!r}")
        return value
    if typing.get_origin(typ) is tuple:  # a YAML list, typed tuple[X, ...]
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key} must be a list, got {value!r}")
        return tuple(_value(typing.get_args(typ)[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if typ is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported params type {typ!r}")  # a programming error, not a user's


