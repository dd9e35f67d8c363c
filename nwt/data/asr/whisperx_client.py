"""Client for the whisperx worker (nwt/data/asr/whisperx_worker.py) running in the ASR venv.

The worker is started once (`WhisperxClient`) and kept for every episode of a run, so its models
load once. Requests and responses are JSON lines (contract in the worker's docstring). Failures
come back as `AsrError` with a message a person can act on:
- the ASR venv's python is missing → "run `make asr-env`";
- the worker answers {"error": ...} (a model that cannot load names where models go);
- the worker dies or answers something that is not the contract → its exit code and stderr tail.
There is no fallback to another backend: that would silently change the clips.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import deque
from pathlib import Path

from nwt.params import SegmentParams, WhisperxParams

WORKER = Path(__file__).with_name("whisperx_worker.py")
ENV_HINT = "make the ASR env with `make asr-env` (whisperx 3.8.6 in its own venv, ≈5 min, ≈7.6 GB)"
STDERR_TAIL_LINES = 20


class AsrError(RuntimeError):
    pass


class WhisperxClient:
    """`with WhisperxClient(cfg) as asr: asr.transcribe(path)` → {"words", "segments", ...}.

    cfg is the segment section's `whisperx:` block (paths relative to the working directory, the
    repository root under `dvc repro`); `worker` is the script the ASR venv's python runs.
    """

    def __init__(self, cfg: WhisperxParams, worker: str | Path = WORKER):
        self.python = Path(cfg.python)
        self.worker = Path(worker)
        self.options = dict(model=cfg.model, language=cfg.language, device=cfg.device, compute_type=cfg.compute_type,
                            batch_size=cfg.batch_size, model_dir=str(Path(cfg.model_dir).resolve()),
                            vad_method=cfg.vad_method)
        self.proc: subprocess.Popen | None = None
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_thread: threading.Thread | None = None

    def start(self) -> WhisperxClient:
        if not self.python.exists():
            raise AsrError(f"segment.backend whisperx: the ASR env's python {self.python} does not exist; {ENV_HINT}")
        if not os.access(self.python, os.X_OK):
            raise AsrError(f"segment.backend whisperx: {self.python} is not executable; {ENV_HINT}")
        self.proc = subprocess.Popen([str(self.python), str(self.worker)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        return self

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())

    def _died(self, what: str) -> AsrError:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)
        tail = "\n".join(self._stderr) or "(no stderr)"
        return AsrError(f"whisperx worker {what} (exit code {code}); its stderr ends:\n{tail}")

    def transcribe(self, audio: str | Path) -> dict:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        request = dict(self.options, audio=str(Path(audio).resolve()))
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("exited before taking a request") from None
        line = self.proc.stdout.readline()
        if not line:
            raise self._died(f"exited without answering for {Path(audio).name}")
        try:
            response = json.loads(line)
        except json.JSONDecodeError:
            raise AsrError(f"whisperx worker broke the protocol (not JSON): {line[:200]!r}") from None
        if not isinstance(response, dict):
            raise AsrError(f"whisperx worker broke the protocol (not an object): {line[:200]!r}")
        if "error" in response:
            raise AsrError(f"whisperx worker: {response['error']}")
        return validate_response(response)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.proc = None

    def __enter__(self) -> WhisperxClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def validate_response(response: dict) -> dict:
    """Check the success shape; words sorted by time with start ≤ end."""
    words, segments = response.get("words"), response.get("segments")
    if not isinstance(words, list) or not isinstance(segments, list):
        raise AsrError(f"whisperx worker broke the protocol: need lists 'words' and 'segments', got {sorted(response)}")
    clean = []
    for w in words:
        try:
            word, start, end = str(w["word"]), float(w["start_s"]), float(w["end_s"])
        except (KeyError, TypeError, ValueError):
            raise AsrError(f"whisperx worker broke the protocol: bad word {w!r}") from None
        if end < start:
            raise AsrError(f"whisperx worker broke the protocol: word ends before it starts {w!r}")
        clean.append({"word": word, "start_s": start, "end_s": end})
    clean.sort(key=lambda w: w["start_s"])
    return dict(response, words=clean)


def client_from_params(cfg: SegmentParams) -> WhisperxClient:
    """The segment section → a client for its `whisperx:` block."""
    return WhisperxClient(cfg.whisperx)
