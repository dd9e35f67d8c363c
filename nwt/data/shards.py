"""WebDataset shards of clips, and the loaders that stream them.

One sample per clip, key `<episode_id>_<clip:05d>` (no dots: WebDataset splits keys at the
first dot). Fields:
- `mjpeg`: the clip's frames, 256×224 RGB, as concatenated JPEGs; `json["frame_bytes"]` holds
  each frame's length. JPEG (q=`JPEG_QUALITY`) was chosen over H.264 because the dVAE loader
  needs random frames, and one `cv2.imdecode` of a 256×224 JPEG costs ≈1 ms with no seek.
- `wav`: mono PCM16 audio at the pipeline rate, exactly n_frames × samples_per_frame samples.
- `json`: metadata (episode id and index, split, times, crop track, words, ground truth).
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import webdataset as wds

JPEG_QUALITY = 95
SPLITS = ("train", "val", "test", "unseen")


@dataclass
class Clip:
    key: str
    frames: np.ndarray  # (T, 256, 224, 3) uint8 RGB
    audio: np.ndarray  # (T * samples_per_frame,) float32 in [-1, 1]
    meta: dict

    @property
    def episode_index(self) -> int:
        return int(self.meta["episode_index"])


def encode_frames(frames: np.ndarray) -> tuple[bytes, list[int]]:
    """(T, H, W, 3) uint8 RGB → concatenated JPEG bytes and per-frame lengths."""
    parts = []
    for frame in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        parts.append(buf.tobytes())
    return b"".join(parts), [len(p) for p in parts]


def decode_frames(blob: bytes, frame_bytes: Sequence[int], which: Iterable[int] | None = None) -> np.ndarray:
    """Decode all frames, or only the indices in `which`, → (N, H, W, 3) uint8 RGB."""
    offsets = np.concatenate([[0], np.cumsum(frame_bytes)])
    idx = range(len(frame_bytes)) if which is None else which
    out = []
    for i in idx:
        buf = np.frombuffer(blob, np.uint8, count=int(frame_bytes[i]), offset=int(offsets[i]))
        out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def decode_wav(blob: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(blob), dtype="float32")
    return audio, rate


def clip_sample(key: str, frames: np.ndarray, audio: np.ndarray, sample_rate: int, meta: dict) -> dict:
    if "." in key:
        raise ValueError(f"shard key {key!r} contains a dot")
    blob, sizes = encode_frames(frames)
    meta = dict(meta, key=key, n_frames=int(len(frames)), frame_bytes=sizes, sample_rate=sample_rate)
    return {"__key__": key, "mjpeg": blob, "wav": encode_wav(audio, sample_rate), "json": json.dumps(meta).encode()}


def parse_sample(sample: dict, decode_video: bool = True) -> Clip:
    meta = json.loads(sample["json"])
    audio, _ = decode_wav(sample["wav"])
    frames = decode_frames(sample["mjpeg"], meta["frame_bytes"]) if decode_video else np.zeros((0,), np.uint8)
    return Clip(key=sample["__key__"], frames=frames, audio=audio, meta=meta)


def shard_paths(shard_dir: str | Path, split: str) -> list[str]:
    return sorted(str(p) for p in Path(shard_dir).glob(f"{split}-*.tar"))


def _raw_samples(paths: Sequence[str]) -> Iterator[dict]:
    for path in paths:
        # one shard at a time, in order: the caller decides the order (and so the randomness)
        # nodesplitter=None: callers split by rank themselves (random_frames), and val reads all
        yield from wds.WebDataset([path], shardshuffle=False, empty_check=False, nodesplitter=None)


def iter_clips(paths: Sequence[str], decode_video: bool = True) -> Iterator[Clip]:
    """Every clip of the shards, in shard order (deterministic)."""
    for sample in _raw_samples(paths):
        yield parse_sample(sample, decode_video)


def _split(rank: int, world_size: int) -> tuple[int, int]:
    """(part, parts) for this reader: DDP rank × DataLoader worker, so that every clip goes to
    exactly one reader whatever the number of nodes and loader workers."""
    try:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
    except ImportError:  # pragma: no cover - torch is a dependency
        info = None
    if info is None:
        return rank, world_size
    return rank * info.num_workers + info.id, world_size * info.num_workers


def epoch_samples(paths: Sequence[str], seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> Iterator[dict]:
    """One pass over the clips in a seeded shard order shared by all readers; reader `rank` of
    `world_size` (after DataLoader-worker splitting) takes every world_size-th clip."""
    part, parts = _split(rank, world_size)
    order = np.random.default_rng([seed, epoch]).permutation(len(paths))  # the same on every reader
    for n, sample in enumerate(_raw_samples([paths[i] for i in order])):
        if n % parts == part:
            yield sample


def random_frames(
    paths: Sequence[str],
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    frames_per_clip: int = 8,
    *,
    buffer_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches of random frames: (B, 256, 224, 3) uint8 RGB, (B,) episode index.

    Clips are read shard by shard in a seeded random order; each clip contributes
    `frames_per_clip` random frames to a shuffle buffer of `buffer_size` frames
    (train_dvae.shuffle_buffer). Readers (DDP ranks × DataLoader workers) see disjoint clips.
    """
    if not paths:
        raise FileNotFoundError("no shards to read frames from")
    rng = np.random.default_rng([seed, rank, 1])
    buf_frames: list[np.ndarray] = []
    buf_episode: list[int] = []
    epoch = 0
    while True:
        for sample in epoch_samples(paths, seed, epoch, rank, world_size):
            meta = json.loads(sample["json"])
            sizes = meta["frame_bytes"]
            pick = rng.choice(len(sizes), size=min(frames_per_clip, len(sizes)), replace=False)
            for frame in decode_frames(sample["mjpeg"], sizes, pick):
                buf_frames.append(frame)
                buf_episode.append(int(meta["episode_index"]))
            while len(buf_frames) >= buffer_size:
                yield _draw(buf_frames, buf_episode, batch_size, rng)
        if not buf_frames:
            raise RuntimeError(f"rank {rank}/{world_size} got no clips from {len(paths)} shards")
        while len(buf_frames) >= max(batch_size, buffer_size // 2):
            yield _draw(buf_frames, buf_episode, batch_size, rng)
        epoch += 1


def random_windows(
    paths: Sequence[str],
    window_frames: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Endless random clip windows with their audio: frames (W, 256, 224, 3) uint8 RGB, audio
    (W × samples_per_frame,) float32 and the clip's metadata (with `window_start` added).
    Clips shorter than the window are skipped. Readers see disjoint clips."""
    if not paths:
        raise FileNotFoundError("no shards to read windows from")
    rng = np.random.default_rng([seed, rank, 2])
    epoch = 0
    while True:
        found = False
        for sample in epoch_samples(paths, seed, epoch, rank, world_size):
            meta = json.loads(sample["json"])
            n = len(meta["frame_bytes"])
            if n < window_frames:
                continue
            found = True
            start = int(rng.integers(0, n - window_frames + 1))
            frames = decode_frames(sample["mjpeg"], meta["frame_bytes"], range(start, start + window_frames))
            audio, _ = decode_wav(sample["wav"])
            spf = len(audio) // n
            yield frames, audio[start * spf:(start + window_frames) * spf], dict(meta, window_start=start)
        if not found:
            raise RuntimeError(f"no clip of ≥ {window_frames} frames for reader {rank}/{world_size}")
        epoch += 1


def _draw(frames: list, episodes: list, batch_size: int, rng: np.random.Generator):
    take = sorted(rng.choice(len(frames), size=min(batch_size, len(frames)), replace=False), reverse=True)
    batch = [(frames.pop(i), episodes.pop(i)) for i in take]
    return np.stack([b[0] for b in batch]), np.array([b[1] for b in batch], np.int64)


class ShardWriter:
    """`{split}-%06d.tar` shards of at most `max_count` clips, written atomically.

    Shards are numbered from `start_index`, at most `max_shards` of them (so that writers
    given disjoint ranges, e.g. one per episode, never collide).
    """

    def __init__(self, out_dir: str | Path, split: str, max_count: int = 64, start_index: int = 0,
                 max_shards: int | None = None):
        self.out_dir, self.split, self.max_count = Path(out_dir), split, max_count
        self.start_index, self.max_shards = start_index, max_shards
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._writer = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._count = 0
        self.n_shards = 0

    def write(self, sample: dict) -> None:
        if self._writer is None or self._count >= self.max_count:
            if self.max_shards is not None and self.n_shards >= self.max_shards:
                raise RuntimeError(f"more than {self.max_shards} {self.split} shards from one writer: "
                                   "raise the clips per shard")
            self._close_current()
            self._final = self.out_dir / self.shard_name(self.n_shards)
            self._tmp = self._final.with_name("." + self._final.name + ".tmp")
            # a fixed member mtime: the same clips give byte-identical shards, so DVC sees an
            # unchanged data/shards after a rerun and does not retrain everything downstream
            self._writer = wds.TarWriter(str(self._tmp), mtime=0.0)
            self._count = 0
            self.n_shards += 1
        self._writer.write(sample)
        self._count += 1

    def shard_name(self, n: int) -> str:
        return f"{self.split}-{self.start_index + n:06d}.tar"

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._tmp.replace(self._final)
            self._writer = None

    def close(self) -> None:
        self._close_current()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
