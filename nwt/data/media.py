"""Video and audio I/O through ffmpeg/ffprobe, in the pipeline's time base.

Frames are read at the pipeline fps by timestamp (ffmpeg's `fps` filter), so 29.97 fps or
variable-frame-rate sources land on the same 25 fps grid as the synthetic corpus; audio is
decoded to mono float32 at the pipeline rate. Errors become `MediaError` with a ledger reason.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class MediaError(RuntimeError):
    """A source that cannot be used; `reason` is a ledger reason (nwt.data.ledger.REASONS)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keep `reason` when Ray pickles the error back from a worker
        return (type(self), (self.reason, str(self)))


def require_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: install it with `apt-get install ffmpeg` (or `make setup`)")


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float  # average frame rate of the video stream (0 if none)
    sample_rate: int  # of the first audio stream (0 if none)
    channels: int


def probe(path: str | Path) -> MediaInfo:
    require_ffmpeg()
    path = Path(path)
    if not path.is_file():
        raise MediaError("download_failed", f"{path}: no such file")
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "ffprobe failed"
        raise MediaError("corrupt", f"{path.name}: not a readable media file ({msg})")
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and s.get("disposition", {}).get("attached_pic") != 1), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = float(info.get("format", {}).get("duration") or 0.0)
    fps = 0.0
    if video is not None:
        num, _, den = (video.get("avg_frame_rate") or "0/1").partition("/")
        fps = float(num) / float(den) if float(den or 0) else 0.0
    return MediaInfo(
        duration_s=duration,
        has_video=video is not None,
        has_audio=audio is not None,
        width=int(video["width"]) if video else 0,
        height=int(video["height"]) if video else 0,
        fps=fps,
        sample_rate=int(audio.get("sample_rate", 0)) if audio else 0,
        channels=int(audio.get("channels", 0)) if audio else 0,
    )


def check_episode(path: str | Path, min_seconds: float) -> MediaInfo:
    """Probe and validate a source episode; raises MediaError with the ledger reason."""
    info = probe(path)
    if not info.has_video:
        raise MediaError("no_video", f"{Path(path).name}: no video stream (audio-only or not a video)")
    if not info.has_audio:
        raise MediaError("no_audio", f"{Path(path).name}: no audio stream")
    if info.duration_s < min_seconds:
        raise MediaError("too_short", f"{Path(path).name}: {info.duration_s:.1f} s < minimum {min_seconds:.1f} s")
    return info


def iter_frames(path: str | Path, fps: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 BGR resampled to `fps` by timestamp; optional (width, height) resize."""
    info = probe(path)
    if not info.has_video:
        raise MediaError("no_video", f"{Path(path).name}: no video stream")
    width, height = size or (info.width, info.height)
    vf = f"fps={fps}" + (f",scale={width}:{height}:flags=area" if size else "")
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-vf", vf,
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frame_bytes = width * height * 3
    n = 0
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            n += 1
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        rc = proc.wait()
    if n == 0:
        raise MediaError("corrupt", f"{Path(path).name}: no decodable video frames ({err.strip()[-200:]})")
    if rc != 0 and not err.strip().endswith("Broken pipe"):
        # a truncated file still yields its readable frames; say so rather than fail silently
        import logging

        logging.getLogger(__name__).warning("%s: decoding stopped early after %d frames: %s", Path(path).name, n,
                                            err.strip()[-200:])


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """The first audio stream, mixed to mono, resampled → (S,) float32 in [-1, 1]."""
    require_ffmpeg()
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 and not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip()
        reason = "no_audio" if "matches no streams" in err else "corrupt"
        raise MediaError(reason, f"{Path(path).name}: cannot decode audio ({err[-200:]})")
    return np.frombuffer(proc.stdout, np.float32).copy()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class VideoWriter:
    """Raw RGB frames piped into ffmpeg (H.264 + AAC mp4, or VP9 + Opus webm) as they come,
    with the audio muxed in and metadata tags; written atomically (temp file beside `path`,
    renamed onto it only when ffmpeg succeeded), with the modes the umask gives, as every other
    output (nwt/atomic.py)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: int, audio: np.ndarray | None,
                 sample_rate: int, metadata: dict[str, str] | None = None, crf: int = 18):
        require_ffmpeg()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._dir = tempfile.TemporaryDirectory()
        cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            wav = Path(self._dir.name) / "audio.f32"
            np.asarray(audio, np.float32).tofile(wav)
            cmd += ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", str(wav)]
        webm = self.path.suffix.lower() == ".webm"
        if webm:
            cmd += ["-c:v", "libvpx-vp9", "-crf", str(crf + 14), "-b:v", "0", "-deadline", "realtime",
                    "-cpu-used", "8", "-row-mt", "1", "-pix_fmt", "yuv420p"]
        else:
            cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart"]
        if audio is not None:
            cmd += ["-c:a", "libopus" if webm else "aac", "-b:a", "96k", "-shortest"]
        for key, value in (metadata or {}).items():
            cmd += ["-metadata", f"{key}={value}"]
        self._err = open(Path(self._dir.name) / "stderr.txt", "w+b")  # a file: a full pipe cannot block ffmpeg
        self._proc = subprocess.Popen(cmd + [str(self._tmp)], stdin=subprocess.PIPE, stderr=self._err)

    def _error(self) -> RuntimeError:
        self._err.seek(0)
        return RuntimeError(f"ffmpeg failed writing {self.path}: {self._err.read().decode(errors='replace')[-400:]}")

    def write(self, frames: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames, np.uint8).tobytes())
        except BrokenPipeError:
            self._proc.wait()
            raise self._error() from None

    def close(self, ok: bool = True) -> None:
        """Finish (ok) or abandon the file; the final path appears only on success."""
        done = False
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            if not ok:
                self._proc.kill()
            if self._proc.wait() != 0 and ok:
                raise self._error()
            if ok:
                os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the video gets normal modes
                os.replace(self._tmp, self.path)
                done = True
        finally:
            self._err.close()
            self._dir.cleanup()
            if not done and self._tmp.exists():
                self._tmp.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(ok=exc_type is None)


def write_video(path: str | Path, frames_rgb: np.ndarray, fps: int, audio: np.ndarray | None, sample_rate: int,
                metadata: dict[str, str] | None = None, crf: int = 18) -> None:
    """(T, H, W, 3) uint8 RGB (+ mono audio) → a video browsers play, written atomically.

    `.mp4`: H.264 (yuv420p, faststart) + AAC; `.webm`: VP9 + Opus (plays in every Chromium build,
    also those without proprietary codecs — the gallery uses it).
    """
    _, h, w, _ = frames_rgb.shape
    with VideoWriter(path, w, h, fps, audio, sample_rate, metadata, crf) as writer:
        writer.write(frames_rgb)
