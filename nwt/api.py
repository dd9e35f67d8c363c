"""The Python API: `nwt.load_model(NAME_OR_PATH)` → a `Model`, loaded once, that generates any
number of videos (`Model.generate`, streamed into a file like `nwt generate`) or clips in memory
(`Model.generate_frames`: RGB frames and the audio as arrays).

    import nwt
    m = nwt.load_model("mine")   # a store name, a bundle file, or None: the order of `nwt generate`
    video = m.generate("speech.wav", "out.mp4", episode=m.episodes[0], seed=3)
    clip = m.generate_frames("speech.wav", style_seed=7)   # clip.frames: (T, 256, 224, 3) uint8

Built on what the command uses, nothing of its own: nwt.store.resolve picks the model and loads
it (ModelChoice.load), nwt.generate generates (a file path goes through `nwt.generate.generate`, the command's
one path), so the same model, options and seed give the same codes as `nwt generate`.

`nwt.load_model` reaches this module through `nwt.__getattr__` on first use (nwt/__init__.py), so
`import nwt`, which every pipeline stage runs, loads none of it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import nwt.generate
from nwt.data.media import write_video
from nwt.params import SamplingParams
from nwt.store import named, resolve

AudioInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class Video:
    """A video `Model.generate` wrote: where, how long, how fast, and the codes it sampled."""

    path: Path
    seconds: float  # of video
    wall_s: float  # generation's wall time, audio loading and encoding included
    codes: np.ndarray  # (T, H', W', heads) uint16

    @property
    def rtf(self) -> float:
        """Seconds of video generated per wall second (≥ 1: faster than real time)."""
        return self.seconds / max(self.wall_s, 1e-9)


@dataclass(frozen=True)
class Clip:
    """A generation in memory (`Model.generate_frames`)."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, H × W = 256 × 224 for the pipeline's models
    audio: np.ndarray  # (T × sample_rate / fps,) float32 mono: the input, cut to whole frames
    fps: int
    sample_rate: int
    wall_s: float
    codes: np.ndarray  # (T, H', W', heads) uint16
    metadata: dict[str, str]  # the provenance tag `save` writes into the container

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    @property
    def rtf(self) -> float:
        return self.seconds / max(self.wall_s, 1e-9)

    def save(self, out: str | os.PathLike) -> Path:
        """Write the frames with the audio muxed in (`.mp4`: H.264 + AAC; `.webm`: VP9 + Opus) and
        the provenance tag in the container's metadata, atomically. Returns the path."""
        write_video(out, self.frames, self.fps, self.audio, self.sample_rate, metadata=self.metadata)
        return Path(out)


class Model:
    """A loaded model (`nwt.load_model`): `episodes` (what `episode=` takes), `sampling` (the
    defaults of temperature, top_k, top_p, guidance), `fps`, `sample_rate`, `source` (which model
    and why it was chosen) and `generator` (the nwt.generate.Generator underneath)."""

    def __init__(self, generator: nwt.generate.Generator, sampling: SamplingParams, source: str):
        self.generator, self.sampling, self.source = generator, sampling, source

    def __repr__(self) -> str:
        return f"<nwt.Model {self.source}: {len(self.episodes)} episodes, {self.fps} fps, {self.sample_rate} Hz>"

    @property
    def episodes(self) -> list[str]:
        return list(self.generator.episode_ids)

    @property
    def fps(self) -> int:
        return self.generator.timing.fps

    @property
    def sample_rate(self) -> int:
        return self.generator.timing.sample_rate

    def generate(self, audio: AudioInput, out: str | os.PathLike, *, episode: str | None = None, seed: int = 0,
                 style_seed: int | None = None, style_from: str | os.PathLike | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 guidance: float | None = None, mark: bool = True, sample_rate: int | None = None,
                 on_frames: Callable[[int], None] | None = None) -> Video:
        """Generate the video `out` (.mp4 or .webm, the audio muxed in, the provenance tag, the
        visible "SYNTHETIC" mark unless `mark=False`) from `audio`: a file ffmpeg reads (any rate
        and channels) or a mono float array at `sample_rate` (default: the model's). Streamed in
        bounded memory, like `nwt generate`, whose flags the keywords are: `episode` (None: the
        <unk> look), `seed`, `style_seed` / `style_from` (a reference video), and `temperature`,
        `top_k`, `top_p`, `guidance` (None: `Model.sampling`'s). `on_frames(n)` after each chunk."""
        start = time.perf_counter()
        gen = self.generator
        sampling, asked = self._sampling(temperature, top_k, top_p, guidance)
        gen.episode_index(episode)  # an unknown episode stops here, before any work
        style = gen.style_vector(style_seed, style_from)
        if isinstance(audio, (str, os.PathLike)):
            result = nwt.generate.generate(audio, out, sampling, episode=episode, seed=seed, guidance_asked=asked,
                                           mark=mark, generator=gen, style=style, on_frames=on_frames)
        else:
            result = gen.write_stream(self._samples(audio, sample_rate), out, episode,
                                      sampling=gen.sampling_for(sampling, asked), seed=seed, mark=mark, style=style,
                                      on_frames=on_frames)
        return Video(Path(out), result.seconds, time.perf_counter() - start, result.codes)

    def generate_frames(self, audio: AudioInput, *, episode: str | None = None, seed: int = 0,
                        style_seed: int | None = None, style_from: str | os.PathLike | None = None,
                        temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                        guidance: float | None = None, mark: bool = True, sample_rate: int | None = None,
                        on_frames: Callable[[int], None] | None = None) -> Clip:
        """The same generation as `generate` (same keywords, same codes for the same seed), kept in
        memory: a `Clip` of (T, H, W, 3) uint8 RGB frames (the mark drawn unless `mark=False`) and
        the audio. For short clips: every frame is held at once (`generate` streams instead)."""
        start = time.perf_counter()
        gen = self.generator
        sampling, asked = self._sampling(temperature, top_k, top_p, guidance)
        gen.episode_index(episode)
        style = gen.style_vector(style_seed, style_from)
        result = gen.from_audio(self._samples(audio, sample_rate), episode, sampling=gen.sampling_for(sampling, asked),
                                seed=seed, style=style, on_frames=on_frames)
        frames = nwt.generate.add_mark(result.frames) if mark else result.frames
        return Clip(frames, result.audio, self.fps, self.sample_rate, time.perf_counter() - start, result.codes,
                    gen.provenance())

    def _sampling(self, temperature, top_k, top_p, guidance) -> tuple[SamplingParams, bool]:
        """The defaults with the keywords given; and whether guidance was asked for (as a flag of
        `nwt generate`: a default guidance falls back to 1 for a prior that cannot be guided)."""
        given = dict(temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance)
        changes = {key: value for key, value in given.items() if value is not None}
        return dataclasses.replace(self.sampling, **changes), guidance is not None

    def _samples(self, audio: AudioInput, sample_rate: int | None) -> np.ndarray:
        if isinstance(audio, (str, os.PathLike)):
            return nwt.generate.load_audio_file(audio, self.sample_rate)
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"audio at {sample_rate} Hz: this model takes {self.sample_rate} Hz; resample it, or "
                             "pass the file's path (any rate is resampled)")
        return np.asarray(audio, np.float32)


def load_model(model: str | os.PathLike | None = None, *, device: str = "cpu") -> Model:
    """The model `nwt generate --model MODEL` uses, loaded on `device` ("cpu" or "cuda"): MODEL is a
    name in the store ($NWT_HOME/models) or a bundle file; None follows the command's order
    ($NWT_MODEL, the checkout you stand in, the store's default; nwt.store). Raises
    FileNotFoundError, saying how to get a model, when there is none."""
    choice = resolve() if model is None else named(os.fspath(model), "nwt.load_model")
    generator, sampling, _ = choice.load(device)
    return Model(generator, sampling, choice.describe())
