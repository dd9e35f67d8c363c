"""`nwt.generate`: speech audio in, talking-presenter mp4 out (the CLI and evaluate use it).

The prior samples memcodes frame by frame from the audio's log-mel; the dVAE decodes them to
256×224 frames; the audio is muxed in. Every output carries a provenance tag in its container
metadata and, unless `mark=False`, a small visible "synthetic" mark.

Any length in bounded memory: `Generator.stream` computes the log-mel a chunk at a time
(`MelStream`, equal to `log_mel` over the whole audio), the prior samples one frame at a time
(`Prior.sample_iter`: chunked audio encoder, sliding KV cache), and the dVAE decodes every
`decode_chunk` frames into uint8; `Generator.write_stream` (used by `generate()`, the path of `nwt generate`)
pipes those chunks straight into ffmpeg, so a 2-minute clip never holds more than a chunk of
frames. `from_audio` collects everything in memory (short clips: evaluate, tests).

How the prior samples (temperature, top-k, top-p, guidance) is a `nwt.params.SamplingParams`,
which callers take from params.yaml (`default_sampling(load_params())`) or, for a model bundle,
from the bundle (`Generator.sampling_defaults`): nothing here has a default of its own.

The first frame: given a reference frame of the episode (`Generator.references`: a bundle's, or
what the caller sets), the prior is primed with its dVAE codes as frame -1 (not part of the
output), so that frame 0 is already the episode's look rather than the prior's own first draw,
which starts from nothing and can open on another look (hair, shirt, set) that settles only
within a second.

A Generator loads the two checkpoints (`Generator(dvae_path, prior_path)`) or takes models
already built (`Generator.from_models`: what `nwt.bundle.Bundle.generator()` uses).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

import nwt
from nwt.constants import CROP_H, CROP_W, DVAE_MODEL, MELS_PER_FRAME, PRIOR_MODEL, Timing
from nwt.data.media import MediaError, VideoWriter, read_audio
from nwt.geometry import sync_mouth_box
from nwt.models.audio_features import LOG_FLOOR, mel_filterbank
from nwt.params import WHOLE_FRAME, Params, SamplingParams

MIN_AUDIO_S = 0.2
SILENCE_RMS = 1e-4  # below this the input carries no speech to animate
MARK_TEXT = "SYNTHETIC"
MEL_CHUNK_FRAMES = 256  # video frames of log-mel computed at once (≈10 s at 25 fps)
DECODE_CHUNK = 16  # frames the dVAE decodes at once
STYLE_REF_MAX_S = 10.0  # seconds of a reference video read for its style


@dataclass
class Generated:
    frames: np.ndarray | None  # (T, 256, 224, 3) uint8 RGB; None when streamed to a file
    audio: np.ndarray  # (T × samples_per_frame,) float32
    codes: np.ndarray  # (T, H', W', heads) uint16
    seconds: float
    wall_s: float

    @property
    def rtf(self) -> float:
        """Seconds of video generated per wall second (≥ 1: faster than real time)."""
        return self.seconds / max(self.wall_s, 1e-9)


class MelStream:
    """The log-mel of `audio` (whole video frames), a chunk of frames at a time, equal to
    nwt.models.audio_features.log_mel(audio) sliced — without its (S/hop, 80) array or its
    STFT ever existing whole. Two passes: the first finds the global peak (log_mel floors
    everything 8 decades below it), the second computes the chunks asked for."""

    def __init__(self, audio: np.ndarray, timing: Timing, chunk_frames: int = MEL_CHUNK_FRAMES):
        self.audio, self.timing = audio, timing
        self.n_frames = len(audio) // timing.samples_per_frame
        self.hop = timing.mel_hop
        self.pad = timing.mel_window // 2  # as the centred STFT of log_mel pads
        peak = -np.inf
        for lo in range(0, self.n_frames, chunk_frames):
            peak = max(peak, float(self._raw(lo, min(lo + chunk_frames, self.n_frames)).max()))
        self.floor = peak - 8.0

    def _raw(self, lo: int, hi: int) -> torch.Tensor:
        """(N_MELS, 4(hi-lo)) log10 mel of video frames [lo, hi), before the floor."""
        t, spf = self.timing, self.timing.samples_per_frame
        a, b = lo * spf, hi * spf
        a_pad, b_pad = max(0, a - self.pad), min(len(self.audio), b + self.pad)
        x = torch.as_tensor(np.asarray(self.audio[a_pad:b_pad], np.float32))
        # zero padding where the whole signal ends, exactly as the centred STFT of log_mel pads
        x = torch.nn.functional.pad(x, (self.pad - (a - a_pad), self.pad - (b_pad - b)))
        n_fft = t.mel_window
        spec = torch.stft(x, n_fft, self.hop, window=torch.hann_window(n_fft), center=False, return_complex=True)
        # frame j of this STFT is centred on sample a + j·hop, as log_mel's frame 4·lo + j
        power = spec[:, : (hi - lo) * MELS_PER_FRAME].abs() ** 2
        return torch.log10((mel_filterbank(t.sample_rate, n_fft) @ power).clamp_min(LOG_FLOOR))

    def __call__(self, lo: int, hi: int) -> torch.Tensor:
        """(4(hi-lo), N_MELS) float32 log-mel of video frames [lo, hi)."""
        logmel = torch.maximum(self._raw(lo, hi), torch.tensor(self.floor))
        return ((logmel + 4.0) / 4.0).T.contiguous()


def centre_crop_resize(frame: np.ndarray, height: int = CROP_H, width: int = CROP_W) -> np.ndarray:
    """The centre of `frame` at the crop's aspect (height:width), resized to height × width."""
    h, w = frame.shape[:2]
    if h * width > w * height:  # too tall
        ch, cw = int(round(w * height / width)), w
    else:
        ch, cw = h, int(round(h * width / height))
    y, x = (h - ch) // 2, (w - cw) // 2
    crop = frame[y : y + ch, x : x + cw]
    if crop.shape[:2] == (height, width):
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)



def default_sampling(params: Params) -> SamplingParams:
    """How the prior draws codes by default (`evaluate`'s temperature, top-k, top-p, guidance),
    guidance acting where `evaluate.guidance_region` says: `mouth` = the sync expert's mouth box
    of the `faces` framing (nwt.geometry.sync_mouth_box), `frame` = everywhere."""
    e = params.evaluate
    if e.guidance_region == "mouth":
        (r0, r1), (c0, c1) = sync_mouth_box(params.faces.face_scale, params.faces.centre_shift)
        box = (r0, r1, c0, c1)
    else:
        box = WHOLE_FRAME
    return SamplingParams(e.temperature, e.top_k, e.top_p, e.guidance, box)


def guidance_map(box: tuple[float, ...], dims) -> torch.Tensor | None:
    """A SamplingParams.guidance_box (row0, row1, col0, col1 crop fractions) → the prior's
    (H', W') guidance map: 1 on the grid cells the box touches, 0 elsewhere (None for the whole
    frame: guidance everywhere, as a scalar)."""
    if tuple(box) == WHOLE_FRAME:
        return None
    r0, r1, c0, c1 = box
    if not (0 <= r0 < r1 <= 1 and 0 <= c0 < c1 <= 1):
        raise ValueError(f"guidance_box {tuple(box)} is not a box inside the frame (row0 < row1, col0 < col1, in 0…1)")
    m = torch.zeros(dims.grid_h, dims.grid_w)
    m[int(np.floor(r0 * dims.grid_h)) : int(np.ceil(r1 * dims.grid_h)),
      int(np.floor(c0 * dims.grid_w)) : int(np.ceil(c1 * dims.grid_w))] = 1.0
    return m

class Generator:
    """Trained dVAE + prior, loaded once, for any number of generations."""

    def __init__(self, dvae_path: str | Path = DVAE_MODEL, prior_path: str | Path = PRIOR_MODEL,
                 device: str = "cpu", references: dict[str, np.ndarray] | None = None):
        from nwt.models.dvae_io import load_dvae
        from nwt.models.prior_io import load_prior

        for path, stage in ((dvae_path, "train_dvae"), (prior_path, "train_prior")):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} not found: run `dvc repro {stage}` first or pass its path")
        check_device(device)
        dvae, dvae_meta = load_dvae(dvae_path, device=device)
        prior, prior_meta = load_prior(prior_path, device=device)
        self._attach(dvae, dvae_meta, prior, prior_meta, device, prior_path, references)

    @classmethod
    def from_models(cls, dvae, dvae_meta: dict, prior, prior_meta: dict, device: str = "cpu",
                    sampling_defaults: SamplingParams | None = None, source: object = "the models",
                    references: dict[str, np.ndarray] | None = None) -> Generator:
        """A Generator of models already built (eval mode, on `device`) with their checkpoint metas
        (everything but the weights): how a model bundle makes one (nwt.bundle.Bundle.generator).
        `sampling_defaults`: the bundle's sampling, which `nwt generate` uses for the flags not given;
        `references`: the bundle's reference frame per episode (see `Generator.references`)."""
        check_device(device)
        gen = cls.__new__(cls)
        gen._attach(dvae, dvae_meta, prior, prior_meta, device, source, references)
        gen.sampling_defaults = sampling_defaults
        return gen

    def _attach(self, dvae, dvae_meta: dict, prior, prior_meta: dict, device: str, source: object,
                references: dict[str, np.ndarray] | None) -> None:
        self.device = device
        # episode id → a real frame of its look, (H, W, 3) uint8 RGB (a bundle's reference frames,
        # nwt.bundle.reference_frames of the shards): the primer of every generation of that
        # episode (see `primer_codes`); an episode without one starts from the prior alone
        self.references: dict[str, np.ndarray] = dict(references or {})
        self._primers: dict[str, np.ndarray] = {}  # episode id → its reference frame's codes
        self.dvae, self.dvae_meta = dvae, dvae_meta
        self.prior, self.prior_meta = prior, prior_meta
        # the sampling defaults of a bundle; None for checkpoints (callers take params.yaml's)
        self.sampling_defaults: SamplingParams | None = None
        self.timing = Timing.from_checkpoint(self.prior_meta, source)
        self.episode_ids: list[str] = list(self.prior_meta.get("episode_ids", []))
        pd, dd = self.prior.dims, self.dvae.dims
        if (pd.grid_h, pd.grid_w, pd.code_heads, pd.num_codes) != (*dd.grid, dd.heads, dd.num_codes):
            raise ValueError(f"prior ({pd.grid_h}×{pd.grid_w}×{pd.code_heads}, {pd.num_codes} codes) and dVAE "
                             f"({dd.grid[0]}×{dd.grid[1]}×{dd.heads}, {dd.num_codes} codes) do not match: "
                             "retrain the prior on this dVAE's tokens")

    def episode_index(self, episode_id: str | None) -> int | None:
        """Index of a trained episode; None (the `<unk>` row) when not given."""
        if episode_id is None:
            return None
        if episode_id not in self.episode_ids:
            raise ValueError(f"unknown episode {episode_id!r}; trained episodes: {', '.join(self.episode_ids)}")
        return self.episode_ids.index(episode_id)

    def provenance(self) -> dict[str, str]:
        return {
            "comment": (f"generated by nwt {nwt.__version__}; dvae {self.dvae_meta.get('fingerprint', '?')}; "
                        f"prior {self.prior_meta.get('fingerprint', '?')}; synthetic media"),
            "encoder": f"nwt {nwt.__version__}",
        }

    # ------------------------------------------------------------------ style
    def style_vector(self, style_seed: int | None = None, style_from: str | Path | None = None) -> torch.Tensor | None:
        """The prior's style z: drawn from N(0, I) by `style_seed`, or the reference encoder's
        mean over the codes of the video `style_from` (its first STYLE_REF_MAX_S seconds, read
        at the pipeline fps, centre-cropped to 256:224 and resized — a face crop stays as it is),
        or None (z = 0, the prior's mean)."""
        if style_seed is not None and style_from is not None:
            raise ValueError("give either a style seed or a style reference video, not both")
        if style_seed is None and style_from is None:
            return None
        if self.prior.dims.style_dim == 0:
            raise ValueError("this prior was trained without a style latent (prior.style_dim: 0)")
        if style_seed is not None:
            return self.prior.style_from_seed(style_seed)
        return self.prior.encode_style(torch.from_numpy(self.reference_codes(style_from).astype(np.int64)))

    def reference_codes(self, path: str | Path) -> np.ndarray:
        """dVAE codes (T, H', W', heads) of a reference video's first STYLE_REF_MAX_S seconds."""
        from nwt.data.media import iter_frames
        from nwt.models.dvae_io import encode_frames

        if not Path(path).is_file():
            raise FileNotFoundError(f"style reference {path} does not exist")
        height, width = self.dvae.dims.height, self.dvae.dims.width
        frames = []
        try:
            for frame in iter_frames(path, self.timing.fps):
                frames.append(centre_crop_resize(frame[..., ::-1], height, width))  # BGR → RGB
                if len(frames) >= STYLE_REF_MAX_S * self.timing.fps:
                    break
        except MediaError as exc:
            raise ValueError(f"cannot read the style reference {path}: {exc}") from None
        return encode_frames(self.dvae, np.stack(frames))

    def primer_codes(self, episode_id: str | None) -> np.ndarray | None:
        """The dVAE codes (H', W', heads) of the episode's reference frame (`encode_reference`,
        once per episode): what the prior is primed with so that frame 0 is already the episode's
        look. None for `<unk>` or an episode without a reference frame."""
        frame = self.references.get(episode_id) if episode_id is not None else None
        if frame is None:
            return None
        if episode_id not in self._primers:
            try:
                self._primers[episode_id] = self.encode_reference(frame)
            except ValueError as err:
                raise ValueError(f"the reference frame of {episode_id!r}: {err}") from None
        return self._primers[episode_id]

    def encode_reference(self, frame: np.ndarray) -> np.ndarray:
        """A frame (H, W, 3) uint8 RGB → its dVAE codes (H', W', heads) uint16, centre-cropped and
        resized first when it is not the dVAE's size."""
        from nwt.models.dvae_io import encode_frames

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.dtype} {frame.shape}")
        frame = centre_crop_resize(frame, self.dvae.dims.height, self.dvae.dims.width)
        return encode_frames(self.dvae, frame[None])[0]

    # ------------------------------------------------------------------ generation
    def _check_audio(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio (S,), got shape {audio.shape}")
        if len(audio) < MIN_AUDIO_S * self.timing.sample_rate:
            raise ValueError(f"audio is {len(audio) / self.timing.sample_rate:.2f} s long; "
                             f"need at least {MIN_AUDIO_S} s")
        if not np.isfinite(audio).all():
            raise ValueError("audio holds NaN or infinite samples")
        rms = np.sqrt(sum(float(np.square(audio[i : i + (1 << 20)], dtype=np.float64).sum())
                          for i in range(0, len(audio), 1 << 20)) / len(audio))
        if rms < SILENCE_RMS:
            raise ValueError("audio is silent: there is no speech to animate")
        return audio[: len(audio) // self.timing.samples_per_frame * self.timing.samples_per_frame]

    def n_frames(self, audio: np.ndarray) -> int:
        return len(audio) // self.timing.samples_per_frame

    def stream(self, audio: np.ndarray, episode_id: str | None = None, *, sampling: SamplingParams, seed: int = 0,
               style: torch.Tensor | None = None, decode_episode: str | None | bool = True,
               decode_chunk: int = DECODE_CHUNK, prime: bool = True,
               on_frames: Callable[[int], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (codes (n, H', W', heads) uint16, frames (n, H, W, 3) uint8 RGB) chunks of at
        most `decode_chunk` frames, in memory that does not grow with the audio's length.

        `sampling`: how the prior draws its codes (temperature ≤ 0 is greedy; top-k 0 and top-p 1
        are off; guidance, how far the codes are pushed from what the prior predicts without the
        audio towards what it predicts with it, 1 = off — see `sampling_for`). `style`: the prior's
        style z (see `style_vector`; None = 0). `decode_episode`: the dVAE decoder's episode row —
        True (default) = the same episode as the prior's, or an episode id / None (`<unk>`) to
        hold the decoder's look fixed (episode-control scoring). `prime`: start the prior from
        the episode's reference frame (`primer_codes`; not part of the output) so that frame 0 is
        the episode's look — False: from the prior alone, as does an episode without a reference.
        `on_frames(n)` is called after each chunk (a progress bar's update)."""
        from nwt.models.dvae_io import decode_codes

        audio = self._check_audio(audio)
        index = self.episode_index(episode_id)
        dvae_index = self.dvae_meta_episode_index(episode_id if decode_episode is True else decode_episode)
        mel = MelStream(audio, self.timing)
        primer = self.primer_codes(episode_id) if prime else None
        codes_iter = self.prior.sample_iter(mel, mel.n_frames, episode_index=index, temperature=sampling.temperature,
                                            top_k=sampling.top_k, top_p=sampling.top_p, seed=seed, style=style,
                                            guidance=sampling.guidance,
                                            guidance_map=guidance_map(sampling.guidance_box, self.prior.dims),
                                            prime=None if primer is None else torch.from_numpy(primer.astype(np.int64)))
        pending: list[torch.Tensor] = []
        for t, codes in enumerate(codes_iter, start=1):
            pending.append(codes)
            if len(pending) == decode_chunk or t == mel.n_frames:
                chunk = torch.stack(pending).cpu().numpy().astype(np.uint16)
                pending = []
                frames = decode_codes(self.dvae, chunk, dvae_index, batch_size=decode_chunk)
                if on_frames is not None:
                    on_frames(len(chunk))
                yield chunk, frames

    def sampling_for(self, sampling: SamplingParams, guidance_asked: bool = True) -> SamplingParams:
        """The sampling to use with this prior: `sampling` as it is when its guidance was asked
        for explicitly; when it is only the configured default (`guidance_asked=False`), guidance
        1 (the prior as trained) for a prior that learnt no 'no audio' input (trained with
        prior.audio_dropout 0), which cannot be guided. Asking such a prior for guidance ≠ 1
        explicitly is an error (Prior.sample_iter says how to get one)."""
        if guidance_asked or self.prior.dims.null_audio:
            return sampling
        return dataclasses.replace(sampling, guidance=1.0)

    def from_audio(self, audio: np.ndarray, episode_id: str | None = None, *, sampling: SamplingParams,
                   seed: int = 0, **kw) -> Generated:
        """Mono audio at the model's rate → all frames in memory (uint8; for short clips — use
        `write_stream` for long audio). Raises ValueError on empty or silent audio. Keywords as
        `stream` (style, decode_episode, decode_chunk, on_frames)."""
        start = time.perf_counter()
        audio = self._check_audio(audio)
        codes, frames = [], []
        for c, f in self.stream(audio, episode_id, sampling=sampling, seed=seed, **kw):
            codes.append(c)
            frames.append(f)
        return Generated(frames=np.concatenate(frames), audio=audio, codes=np.concatenate(codes),
                         seconds=self.n_frames(audio) / self.timing.fps, wall_s=time.perf_counter() - start)

    def write_stream(self, audio: np.ndarray, out: str | Path, episode_id: str | None = None, *,
                     sampling: SamplingParams, seed: int = 0, mark: bool = True, **kw) -> Generated:
        """Generate straight into the video file `out` (mp4 or webm; audio muxed, provenance tag,
        visible mark unless `mark=False`), a chunk of frames at a time. Returns the codes and
        timing (frames=None). Keywords as `stream`."""
        start = time.perf_counter()
        audio = self._check_audio(audio)
        codes = []
        with VideoWriter(out, self.dvae.dims.width, self.dvae.dims.height, self.timing.fps, audio,
                         self.timing.sample_rate, metadata=self.provenance()) as sink:
            for c, f in self.stream(audio, episode_id, sampling=sampling, seed=seed, **kw):
                codes.append(c)
                sink.write(add_mark(f) if mark else f)
        return Generated(frames=None, audio=audio, codes=np.concatenate(codes),
                         seconds=self.n_frames(audio) / self.timing.fps, wall_s=time.perf_counter() - start)

    def dvae_meta_episode_index(self, episode_id: str | None) -> int:
        from nwt.models.dvae_io import episode_index_for

        return episode_index_for(self.dvae_meta, episode_id)


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")


def add_mark(frames: np.ndarray) -> np.ndarray:
    """A small visible mark in the bottom-right corner of every frame."""
    out = frames.copy()
    h, w = out.shape[1:3]
    for frame in out:
        cv2.putText(frame, MARK_TEXT, (w - 92, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def load_audio_file(path: str | Path, sample_rate: int) -> np.ndarray:
    """Any audio or video file ffmpeg reads → mono float32 at `sample_rate`, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    try:
        return read_audio(path, sample_rate)
    except MediaError as exc:
        raise ValueError(f"cannot read audio from {path}: {exc}") from None


def generate(audio: str | Path, out: str | Path, sampling: SamplingParams, *, episode: str | None = None,
             seed: int = 0, guidance_asked: bool = True, dvae: str | Path = DVAE_MODEL,
             prior: str | Path = PRIOR_MODEL, device: str = "cpu", mark: bool = True,
             style_seed: int | None = None, style_from: str | Path | None = None,
             generator: Generator | None = None, style: torch.Tensor | None = None,
             on_start: Callable[[int], None] | None = None,
             on_frames: Callable[[int], None] | None = None) -> Generated:
    """Generate `out` (mp4 or webm) from the speech in `audio` (any file ffmpeg reads), streamed in
    bounded memory; returns the codes and timing (frames=None). The one generation path of the
    `nwt generate` command.

    `sampling` with `guidance_asked` (False: its guidance is only the configured default, see
    Generator.sampling_for); `style_seed` / `style_from`: the style latent from N(0, I) by seed
    or from a reference video (see Generator.style_vector), or `style`, one already computed;
    `generator`: models already loaded (several files, a model bundle), else they are loaded from
    the checkpoints `dvae` and `prior` on `device`; `on_start(frames)` is called once
    the models and audio are loaded with the number of frames to generate, `on_frames(n)` after
    each chunk of n frames (a progress bar)."""
    gen = generator if generator is not None else Generator(dvae, prior, device)
    if style is None:
        style = gen.style_vector(style_seed, style_from)
    samples = load_audio_file(audio, gen.timing.sample_rate)
    if on_start is not None:
        on_start(gen.n_frames(samples))
    return gen.write_stream(samples, out, episode, sampling=gen.sampling_for(sampling, guidance_asked), seed=seed,
                            mark=mark, style=style, on_frames=on_frames)
