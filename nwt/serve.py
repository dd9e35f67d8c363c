"""`nwt serve`: a local web page for generation (docs/design.md, "The web page").

A person uploads or records speech, chooses an episode's look, the style seed, guidance and the
sampling seed, watches the queue and the progress, and plays and downloads the video. It is the
standard library's threading HTTP server, one page (nwt/serve_page.py, self-contained: nothing is
fetched from the network) and a JSON API under /api:

    GET    /                        the page
    GET    /api/info                the model: episodes, sampling defaults, limits
    GET    /api/episodes/<id>.png   an episode's reference frame (a bundle's, or the checkout's shards)
    POST   /api/jobs?episode=&style_seed=&guidance=&seed=&format=
                                    the audio file as the request body (X-Filename: its name): checked
                                    (size, decodable, duration, silence) before it is queued;
                                    202 and the job's status (as below), or 4xx/503 {"error": message}
    GET    /api/jobs/<id>?since=V   its state, queue position, frames done / total; waits up to
                                    POLL_WAIT_S for a state newer than version V (long poll)
    DELETE /api/jobs/<id>           cancel (waiting: leaves the queue; running: stops at the next chunk)
    GET    /api/jobs/<id>/video     the video (Range requests; ?download=1 as an attachment)

The model loads once at start (the resolution order of `nwt generate`: nwt.store.resolve); one
worker thread generates one job at a time, through nwt.generate.generate (the path of `nwt
generate`), always with the visible mark. Uploads and videos live in a temporary folder removed on
exit; the last KEEP_FINISHED finished jobs keep their videos.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import math
import re
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:  # nwt.generate (torch) loads with the model, not with `nwt --help`
    import numpy as np

    from nwt.generate import Generator
    from nwt.params import SamplingParams

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
DEFAULT_MAX_UPLOAD_MB, DEFAULT_MAX_SECONDS = 50.0, 300.0
MAX_WAITING = 8  # jobs waiting at once; one more is refused (503) until one finishes
KEEP_FINISHED = 20  # finished jobs that keep their videos; older ones are deleted
POLL_WAIT_S = 10.0  # how long a status request waits for something new
DECODE_TIMEOUT_S = 120.0
MAX_GUIDANCE = 20.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("", "0.0.0.0", "::")
FORMATS = {"mp4": "video/mp4", "webm": "video/webm"}
JOB_ID = re.compile(r"[0-9a-f]{16}")


class HTTPError(Exception):
    """A request the server refuses: `status` and a message for the person at the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Cancelled(Exception):
    """Raised from the progress callback to stop a running generation."""


# ----------------------------------------------------------------------------- the model
@dataclass
class ServedModel:
    """A Generator loaded once, its sampling defaults, and what the page shows of it."""

    generator: Generator
    sampling: SamplingParams
    description: str
    references: dict[str, np.ndarray]  # episode id → reference frame (H, W, 3) uint8 RGB
    unseen_ids: list[str]

    @classmethod
    def load(cls, spec: str | None = None, device: str = "cpu") -> ServedModel:
        """The model `nwt generate --model spec` would use (nwt.store.resolve): a bundle with its
        sampling defaults and reference frames, or the checkout's checkpoints with params.yaml's
        sampling defaults and the reference frames of its data/shards (when there)."""
        from nwt.store import resolve

        choice = resolve(spec)
        gen, sampling, bundle = choice.load(device)
        unseen = bundle.unseen_ids if bundle is not None else list(gen.dvae_meta.get("unseen_ids", []))
        return cls(gen, sampling, choice.describe(), gen.references, unseen)

    def info(self) -> dict:
        gen = self.generator
        return {
            "model": self.description,
            "fps": gen.timing.fps,
            "sample_rate": gen.timing.sample_rate,
            "episodes": [{"id": e, "unseen": e in self.unseen_ids,
                          "reference": f"/api/episodes/{quote(e)}.png" if e in self.references else None}
                         for e in gen.episode_ids],
            "style": gen.prior.dims.style_dim > 0,
            "guidance_usable": bool(gen.prior.dims.null_audio),
            "guidance_default": gen.sampling_for(self.sampling, guidance_asked=False).guidance,
            "sampling": dataclasses.asdict(self.sampling),
        }

    def reference_png(self, episode: str) -> bytes:
        import cv2

        if episode not in self.references:
            raise HTTPError(404, f"no reference frame of episode {episode!r}")
        ok, png = cv2.imencode(".png", self.references[episode][..., ::-1])  # RGB → BGR
        if not ok:
            raise HTTPError(500, f"cannot encode the reference frame of {episode!r}")
        return png.tobytes()


# ----------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Options:
    episode: str | None  # None: the <unk> look
    style_seed: int | None  # None: the prior's mean style
    guidance: float | None  # None: the model's default (not asked for)
    seed: int
    format: str  # a key of FORMATS


def _one(query: dict[str, list[str]], key: str) -> str:
    return query.get(key, [""])[-1].strip()


def _number(query: dict[str, list[str]], key: str, kind: type, what: str):
    text = _one(query, key)
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise HTTPError(400, f"{what} must be a{'n integer' if kind is int else ' number'}, not {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise HTTPError(400, f"{what} must be a finite number, not {text!r}")
    return value


def parse_options(query: dict[str, list[str]], gen: Generator) -> Options:
    """The generation options of a POST /api/jobs query, checked against the model: a wrong one
    is an HTTPError 400 that says what is allowed."""
    episode = _one(query, "episode") or None
    if episode is not None and episode not in gen.episode_ids:
        raise HTTPError(400, f"unknown episode {episode!r}; this model's episodes: {', '.join(gen.episode_ids)}")
    style_seed = _number(query, "style_seed", int, "the style seed")
    if style_seed is not None and gen.prior.dims.style_dim == 0:
        raise HTTPError(400, "this model has no style latent (prior.style_dim 0): leave the style seed empty")
    guidance = _number(query, "guidance", float, "the guidance")
    if guidance is not None and not 0 <= guidance <= MAX_GUIDANCE:
        raise HTTPError(400, f"the guidance must be between 0 and {MAX_GUIDANCE:g} (1 = off), not {guidance:g}")
    if guidance is not None and guidance != 1 and not gen.prior.dims.null_audio:
        raise HTTPError(400, "this model cannot be guided (its prior was trained without a 'no audio' input, "
                             "prior.audio_dropout 0): use guidance 1")
    seed = _number(query, "seed", int, "the seed")
    for value, what in ((style_seed, "the style seed"), (seed, "the seed")):
        if value is not None and not 0 <= value < 2**31:
            raise HTTPError(400, f"{what} must be between 0 and {2**31 - 1}, not {value}")
    fmt = _one(query, "format") or "mp4"
    if fmt not in FORMATS:
        raise HTTPError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return Options(episode, style_seed, guidance, seed or 0, fmt)


def check_audio(path: Path, sample_rate: int, max_seconds: float) -> float:
    """Seconds of audio in the upload at `path`; an HTTPError with a message a person understands
    when it is not audio ffmpeg reads, too long, too short or silent. At most max_seconds + 1 s
    is decoded, so a long file costs no more memory than an accepted one."""
    import numpy as np

    from nwt.generate import MIN_AUDIO_S, SILENCE_RMS

    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
           "-t", f"{max_seconds + 1:.3f}", "-f", "f32le", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=DECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HTTPError(422, f"decoding the upload took over {DECODE_TIMEOUT_S:.0f} s: is it audio?") from None
    if proc.returncode != 0 and not proc.stdout:
        err = proc.stderr.decode(errors="replace")
        if "matches no streams" in err:
            raise HTTPError(415, "the file has no audio track: upload speech as wav, flac, mp3, m4a, ogg or webm, "
                                 "or a video with sound")
        raise HTTPError(415, "the file is not audio that ffmpeg can read: upload speech as wav, flac, mp3, m4a, "
                             "ogg or webm, or a video with sound")
    audio = np.frombuffer(proc.stdout, np.float32)
    seconds = len(audio) / sample_rate
    if seconds > max_seconds + 1e-3:
        raise HTTPError(413, f"the audio is longer than {max_seconds:g} s, the limit of this server (nwt serve "
                             "--max-seconds): cut it, or generate it with nwt generate")
    if seconds < MIN_AUDIO_S:
        raise HTTPError(422, f"the audio is {seconds:.2f} s long: it must be at least {MIN_AUDIO_S} s")
    if not np.isfinite(audio).all():
        raise HTTPError(422, "the audio holds NaN or infinite samples")
    if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENCE_RMS:
        raise HTTPError(422, "the audio is silent: there is no speech to animate")
    return seconds


# ----------------------------------------------------------------------------- jobs
@dataclass(eq=False)  # a job is itself: `in` the queue and `is` the running one by identity
class Job:
    id: str
    name: str  # the uploaded file's name (the download is named after it)
    upload: Path
    out: Path
    seconds: float  # of audio
    options: Options
    state: str = "queued"  # queued, running, done, failed, cancelled
    frames_done: int = 0
    frames_total: int = 0
    error: str | None = None
    wall_s: float | None = None
    cancel: bool = False
    finished_at: float = 0.0


class Service:
    """The jobs, their queue and the worker thread that runs one at a time. Every change bumps
    `version` and wakes the long polls waiting on `cond`."""

    def __init__(self, model: ServedModel, workdir: Path, max_upload_bytes: int, max_seconds: float):
        self.model, self.workdir = model, workdir
        self.max_upload_bytes, self.max_seconds = max_upload_bytes, max_seconds
        self.cond = threading.Condition()
        self.jobs: dict[str, Job] = {}
        self.waiting: deque[Job] = deque()
        self.running: Job | None = None
        self.version, self.closing = 0, False
        self.worker = threading.Thread(target=self._work, name="nwt-serve-worker", daemon=True)
        self.worker.start()

    def _changed(self) -> None:  # with self.cond held
        self.version += 1
        self.cond.notify_all()

    def limits(self) -> dict:
        from nwt.generate import MIN_AUDIO_S

        return {"max_upload_mb": self.max_upload_bytes / 1e6, "max_seconds": self.max_seconds,
                "min_seconds": MIN_AUDIO_S, "max_waiting": MAX_WAITING}

    def too_big(self, length: int) -> HTTPError:
        return HTTPError(413, f"the file is {length / 1e6:.1f} MB: this server takes uploads of at most "
                              f"{self.max_upload_bytes / 1e6:g} MB (nwt serve --max-upload-mb)")

    def _check_room(self) -> None:  # with self.cond held
        if self.closing:
            raise HTTPError(503, "the server is stopping")
        if len(self.waiting) >= MAX_WAITING:
            raise HTTPError(503, f"the queue is full ({MAX_WAITING} waiting): try again when one has finished")

    def submit(self, read_body, length: int, name: str, options: Options) -> Job:
        """Store the upload (`read_body(n)` gives its bytes), check it, queue it."""
        if length > self.max_upload_bytes:
            raise self.too_big(length)
        with self.cond:
            self._check_room()
        job_id = secrets.token_hex(8)
        upload = self.workdir / f"{job_id}.upload"
        try:
            with open(upload, "wb") as f:
                left = length
                while left > 0:
                    chunk = read_body(min(left, 1 << 20))
                    if not chunk:
                        raise HTTPError(400, "the upload ended early: try again")
                    f.write(chunk)
                    left -= len(chunk)
            seconds = check_audio(upload, self.model.generator.timing.sample_rate, self.max_seconds)
            job = Job(job_id, name, upload, self.workdir / f"{job_id}.{options.format}", seconds, options)
            with self.cond:
                self._check_room()
                self.jobs[job_id] = job
                self.waiting.append(job)
                self._changed()
        except BaseException:
            upload.unlink(missing_ok=True)
            raise
        _log(f"job {job_id}: {name!r}, {seconds:.1f} s of audio, queued at position {len(self.waiting)}")
        return job

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise HTTPError(404, f"no job {job_id!r} (the server keeps the last {KEEP_FINISHED} finished jobs)")
        return job

    def status(self, job: Job) -> dict:  # with self.cond held
        position = 0 if job is self.running else (list(self.waiting).index(job) + 1 if job in self.waiting else None)
        return {"id": job.id, "state": job.state, "position": position, "version": self.version,
                "frames_done": job.frames_done, "frames_total": job.frames_total, "seconds": job.seconds,
                "error": job.error, "wall_s": job.wall_s, "format": job.options.format,
                "video": f"/api/jobs/{job.id}/video" if job.state == "done" else None,
                "download_name": f"{Path(job.name).stem or 'speech'}-nwt.{job.options.format}",
                "queue": {"running": self.running is not None, "waiting": len(self.waiting)}}

    def wait(self, job_id: str, since: int | None, timeout: float = POLL_WAIT_S) -> dict:
        """The job's status once something changed after version `since` (or at once)."""
        with self.cond:
            job = self.job(job_id)
            if since is not None:
                self.cond.wait_for(lambda: self.version != since or self.closing, timeout)
            return self.status(job)

    def cancel(self, job_id: str) -> dict:
        with self.cond:
            job = self.job(job_id)
            if job in self.waiting:
                self.waiting.remove(job)
                job.state, job.finished_at = "cancelled", time.monotonic()
                job.upload.unlink(missing_ok=True)
            elif job is self.running:
                job.cancel = True
            self._changed()
            return self.status(job)

    def _work(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.waiting or self.closing)
                if self.closing:
                    return
                job = self.running = self.waiting.popleft()
                job.state = "running"
                self._changed()
            start = time.perf_counter()
            state, error = self._run(job)
            with self.cond:  # the job's end and the queue's next state, seen together
                job.state, job.error, job.wall_s = state, error, time.perf_counter() - start
                self.running, job.finished_at = None, time.monotonic()
                self._prune()
                self._changed()
            _log(f"job {job.id}: {state} after {job.wall_s:.1f} s" + (f": {error}" if error else ""))

    def _run(self, job: Job) -> tuple[str, str | None]:
        """Generate one job: (state, error); whatever goes wrong is the job's failure, never the server's."""
        import nwt.generate

        gen, opts = self.model.generator, job.options

        def on_start(frames: int) -> None:
            with self.cond:
                job.frames_total = frames
                self._changed()

        def on_frames(n: int) -> None:
            with self.cond:
                if job.cancel or self.closing:
                    raise Cancelled
                job.frames_done += n
                self._changed()

        sampling = self.model.sampling
        if opts.guidance is not None:
            sampling = dataclasses.replace(sampling, guidance=opts.guidance)
        state, error = "done", None
        try:
            nwt.generate.generate(job.upload, job.out, sampling, episode=opts.episode, seed=opts.seed,
                                  guidance_asked=opts.guidance is not None, generator=gen,
                                  style=gen.style_vector(opts.style_seed), mark=True, on_start=on_start,
                                  on_frames=on_frames)
        except Cancelled:
            state = "cancelled"
        except Exception as exc:  # reported on the page, logged here
            state, error = "failed", f"generation failed: {exc}"
            traceback.print_exc(file=sys.stderr)
        finally:
            job.upload.unlink(missing_ok=True)
        return state, error

    def _prune(self) -> None:  # with self.cond held
        finished = sorted((j for j in self.jobs.values() if j.finished_at), key=lambda j: j.finished_at)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            job.out.unlink(missing_ok=True)
            del self.jobs[job.id]

    def close(self) -> None:
        """Stop the worker (a running generation stops at its next chunk of frames)."""
        with self.cond:
            self.closing = True
            self._changed()
        self.worker.join(timeout=60)


def _log(message: str) -> None:
    print(f"nwt serve: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- HTTP
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nwt-serve"
    server: Server

    def log_message(self, format: str, *args) -> None:
        pass  # the job events are logged instead (_log); status polls would drown them

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def do_DELETE(self) -> None:
        self._dispatch(self._delete)

    def handle_expect_100(self) -> bool:
        """Refuse a too large upload before its body is sent (curl asks first for large files)."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.service.max_upload_bytes:
            self.close_connection = True
            self._json(413, {"error": self.server.service.too_big(int(length)).message})
            return False
        return super().handle_expect_100()

    def _dispatch(self, route) -> None:
        url, length = urlsplit(self.path), self.headers.get("Content-Length", "")
        self.body_left = int(length) if length.isdigit() else 0  # a body left unread closes the connection
        if self.headers.get("Transfer-Encoding"):  # a chunked body is not read: nothing after it either
            self.close_connection = True
        try:
            if not self.server.host_allowed(self.headers.get("Host", "")):
                raise HTTPError(421, "this server answers requests for its own address only")
            route(url.path, parse_qs(url.query))
        except HTTPError as exc:
            if 0 < self.body_left <= self.server.service.max_upload_bytes:
                self._read_body(self.body_left, drain=True)  # so that the browser reads the message
            self._json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # one bad request never stops the server
            traceback.print_exc(file=sys.stderr)
            self._json(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

    def _get(self, path: str, query: dict) -> None:
        service = self.server.service
        if path in ("/", "/index.html"):
            from nwt.serve_page import PAGE

            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(200, {**service.model.info(), **service.limits()})
        elif m := re.fullmatch(r"/api/episodes/(.+)\.png", path):
            self._send(200, service.model.reference_png(unquote(m.group(1))), "image/png", cache=True)
        elif m := re.fullmatch(r"/api/jobs/([^/]+)", path):
            since = _one(query, "since")
            self._json(200, service.wait(m.group(1), int(since) if since.isdigit() else None))
        elif m := re.fullmatch(r"/api/jobs/([^/]+)/video", path):
            with service.cond:
                job = service.job(m.group(1))
                status = service.status(job)
            if job.state != "done" or not job.out.is_file():
                raise HTTPError(404, f"job {job.id} has no video ({job.state})")
            name = status["download_name"] if _one(query, "download") else None
            self._send_file(job.out, FORMATS[job.options.format], name)
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            raise HTTPError(404, f"no page {path}")

    def _post(self, path: str, query: dict) -> None:
        if path != "/api/jobs":
            raise HTTPError(404, f"no page {path}")
        service = self.server.service
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HTTPError(411, "send the audio file as the request body, with its Content-Length")
        length = int(length)
        if length == 0:
            raise HTTPError(400, "the upload is empty: choose or record some speech")
        if length > service.max_upload_bytes:
            raise service.too_big(length)  # the body is left unread: the response closes the connection
        options = parse_options(query, service.model.generator)
        name = unquote(self.headers.get("X-Filename", "")) or "speech"
        job = service.submit(self._read_body, length, Path(name).name, options)
        with service.cond:
            status = service.status(job)
        self._json(202, status)

    def _read_body(self, n: int, drain: bool = False) -> bytes:
        """At most n bytes of the request body; `drain`: read and drop all n."""
        while True:
            chunk = self.rfile.read(min(n, self.body_left, 1 << 20))
            self.body_left -= len(chunk)
            n -= len(chunk)
            if not drain or not chunk or n <= 0:
                return chunk

    def _delete(self, path: str, query: dict) -> None:
        m = re.fullmatch(r"/api/jobs/([^/]+)", path)
        if not m:
            raise HTTPError(404, f"no page {path}")
        self._json(200, self.server.service.cancel(m.group(1)))

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, ctype: str, cache: bool = False, headers: dict | None = None) -> None:
        if getattr(self, "body_left", 0):  # a request body not read (a refused upload): the connection ends here
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, path: Path, ctype: str, download_name: str | None) -> None:
        """The file, or the one byte range asked for (a <video> seeks with Range requests)."""
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start, end = int(m.group(1)), min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            else:
                start = max(0, size - int(m.group(2)))
            if start > end:
                self._send(416, b"", ctype, headers={"Content-Range": f"bytes */{size}"})
                return
            status = 206
        headers = {"Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if download_name:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(download_name)}"
        with open(path, "rb") as f:
            f.seek(start)
            self._send(status, f.read(end - start + 1), ctype, headers=headers)


class Server(http.server.ThreadingHTTPServer):
    """The HTTP server with its Service; `close()` stops both and removes the temporary folder."""

    daemon_threads = True

    def __init__(self, model: ServedModel, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_seconds: float = DEFAULT_MAX_SECONDS):
        check_limits(max_upload_mb, max_seconds)
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another server "
                               "there? pass another --port") from None
        self.host, self.port = host, self.server_address[1]
        self.workdir = Path(tempfile.mkdtemp(prefix="nwt-serve-"))
        self.service = Service(model, self.workdir, int(max_upload_mb * 1e6), max_seconds)

    def server_bind(self) -> None:
        """As HTTPServer's, without its socket.getfqdn (a name lookup that may leave the machine)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in WILDCARD else (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{shown}:{self.port}/"

    def host_allowed(self, host_header: str) -> bool:
        """A Host of this server's own (DNS rebinding cannot reach the API); any on a wildcard address."""
        if self.host in WILDCARD:
            return True
        names = {*LOOPBACK, "[::1]", self.host} if self.host in LOOPBACK else {self.host, f"[{self.host}]"}
        return host_header in {f"{name}:{self.port}" for name in names}

    def close(self) -> None:
        self.server_close()
        self.service.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def check_limits(max_upload_mb: float, max_seconds: float) -> None:
    from nwt.generate import MIN_AUDIO_S

    if not max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be > 0, not {max_upload_mb:g}")
    if not max_seconds >= MIN_AUDIO_S:
        raise ValueError(f"--max-seconds must be at least {MIN_AUDIO_S} (the shortest audio), not {max_seconds:g}")


def serve(model: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_seconds: float = DEFAULT_MAX_SECONDS,
          device: str = "cpu") -> int:
    """`nwt serve`: load the model, serve the page until Ctrl-C or SIGTERM, remove the files."""
    check_limits(max_upload_mb, max_seconds)
    served = ServedModel.load(model, device)
    _log(f"model {served.description}")
    server = Server(served, host, port, max_upload_mb, max_seconds)

    def stop(signum, frame):
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        if host not in LOOPBACK:
            _log(f"WARNING: listening on {host}, reachable from other machines; the server has no login")
        _log(f"generated files go to {server.workdir} (removed on exit); Ctrl-C stops")
        print(f"nwt serve: open {server.url}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        _log("stopping")
    finally:
        server.close()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0

