"""The whisperx worker protocol, offline: the real client and the real worker script, with a fake
`whisperx` module on the worker's path (or a fake worker) standing in for the ASR venv."""
import json
import subprocess
import sys
import textwrap

import pytest
from conftest import repo_section

from nwt.data.asr.whisperx_client import WORKER, AsrError, WhisperxClient, client_from_params
from nwt.params import SegmentParams, with_changes

SEGMENT = repo_section("segment", SegmentParams)


def _cfg(**changes):
    """params.yaml's segment.whisperx block, run by this interpreter (the fakes stand in for whisperx)."""
    return with_changes(SEGMENT.whisperx, **{"python": sys.executable, **changes})

FAKE_WHISPERX = '''
import os, sys
print("whisperx chatter on stdout must not reach the protocol")  # import-time noise
LOADS = []

def load_audio(path):
    return [0.0] * 16000

class _Model:
    def transcribe(self, audio, batch_size=16, language=None):
        print("transcribing...")  # more stdout noise
        return {"language": "en", "segments": [{"start": 0.1, "end": 1.3, "text": " Hello there."}]}

def load_model(arch, device, compute_type="float16", language=None, download_root=None, vad_method="pyannote",
               local_files_only=False):
    if arch == "missing":
        raise FileNotFoundError(f"no model.bin for {arch} in {download_root}")
    LOADS.append(arch)
    sys.stderr.write(f"loaded {arch} into {download_root} ({len(LOADS)} loads)\\n")
    return _Model()

def load_align_model(language_code, device, model_name=None, model_dir=None):
    return object(), {"language": language_code}

def align(segments, model, metadata, audio, device, return_char_alignments=False):
    return {"segments": segments, "word_segments": [
        {"word": "Hello", "start": 0.12, "end": 0.5, "score": 0.9},
        {"word": "2024"},  # no timing: whisperx leaves numerals it cannot align untimed
        {"word": "there.", "start": 0.62, "end": 1.25, "score": 0.8}]}
'''


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_site" / "whisperx"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_WHISPERX)
    monkeypatch.setenv("PYTHONPATH", str(pkg.parent))
    audio = tmp_path / "episode.mp4"
    audio.write_bytes(b"not really audio; the fake loads nothing")
    return tmp_path, audio


def test_worker_answers_words_and_segments(fake_env):
    tmp, audio = fake_env
    with WhisperxClient(_cfg(model="large-v3", model_dir=str(tmp / "models"))) as asr:
        first = asr.transcribe(audio)
        second = asr.transcribe(audio)  # same process, models cached
    assert first["words"] == [{"word": "Hello", "start_s": 0.12, "end_s": 0.5},
                              {"word": "there.", "start_s": 0.62, "end_s": 1.25}]
    assert first["segments"] == [{"start_s": 0.1, "end_s": 1.3, "text": "Hello there."}]
    assert second == first and first["language"] == "en"
    assert (tmp / "models").is_dir()


def test_model_that_cannot_load_is_an_error_naming_where_models_go(fake_env):
    tmp, audio = fake_env
    with WhisperxClient(_cfg(model="missing", model_dir=str(tmp / "models"))) as asr:
        with pytest.raises(AsrError, match="fetched into .*models") as err:
            asr.transcribe(audio)
        assert "missing" in str(err.value)
        with pytest.raises(AsrError, match="audio not found"):  # the worker survives an error
            asr.transcribe(tmp / "nope.mp4")


def test_missing_asr_env_says_how_to_make_it(tmp_path):
    with pytest.raises(AsrError, match="make asr-env"):
        WhisperxClient(_cfg(python=str(tmp_path / ".asr-env" / "bin" / "python"))).start()


def test_worker_without_whisperx_says_how_to_make_the_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # no whisperx importable
    with WhisperxClient(_cfg()) as asr:
        with pytest.raises(AsrError, match="make asr-env"):
            asr.transcribe(tmp_path / "x.mp4")


def _fake_worker(tmp_path, body: str):
    path = tmp_path / "fake_worker.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_worker_crash_reports_exit_code_and_stderr(tmp_path):
    worker = _fake_worker(tmp_path, """
        import sys
        sys.stdin.readline()
        sys.stderr.write("CUDA out of memory\\n")
        sys.exit(7)
    """)
    with WhisperxClient(_cfg(), worker=worker) as asr:
        with pytest.raises(AsrError, match=r"(?s)exit code 7.*CUDA out of memory"):
            asr.transcribe(tmp_path / "a.mp4")


def test_worker_breaking_the_protocol_is_caught(tmp_path):
    worker = _fake_worker(tmp_path, """
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            if req["audio"].endswith("a.mp4"):
                print("hello, not json", flush=True)
            else:
                print(json.dumps({"words": [{"word": "x", "start_s": 2.0, "end_s": 1.0}], "segments": []}), flush=True)
    """)
    with WhisperxClient(_cfg(), worker=worker) as asr:
        with pytest.raises(AsrError, match="not JSON"):
            asr.transcribe(tmp_path / "a.mp4")
        with pytest.raises(AsrError, match="ends before it starts"):
            asr.transcribe(tmp_path / "b.mp4")


def test_request_carries_the_params(tmp_path):
    worker = _fake_worker(tmp_path, """
        import json, sys
        for line in sys.stdin:
            print(json.dumps({"words": [], "segments": [], "echo": json.loads(line)}), flush=True)
    """)
    cfg = with_changes(SEGMENT, backend="whisperx", whisperx=_cfg(
        model="small", language="de", device="cpu", compute_type="int8", batch_size=4, model_dir=str(tmp_path / "m"),
        vad_method="silero"))
    asr = client_from_params(cfg)
    asr.worker = worker
    with asr:
        echo = asr.transcribe(tmp_path / "a.mp4")["echo"]
    assert {k: echo[k] for k in ("model", "language", "device", "compute_type", "batch_size", "vad_method")} == \
        dict(model="small", language="de", device="cpu", compute_type="int8", batch_size=4, vad_method="silero")
    assert echo["audio"] == str((tmp_path / "a.mp4").resolve())
    assert echo["model_dir"] == str((tmp_path / "m").resolve())


def test_worker_wants_every_request_key(fake_env):
    """The values come from params.yaml through the client; the worker has no defaults of its own."""
    _, audio = fake_env
    proc = subprocess.run([sys.executable, str(WORKER)], input=json.dumps({"audio": str(audio)}) + "\n",
                          capture_output=True, text=True, timeout=120)
    error = json.loads(proc.stdout)["error"]
    assert "model_dir" in error and "vad_method" in error


def test_the_worker_is_standalone():
    """It runs in the ASR venv, where nwt is not installed: standard library + whisperx only."""
    source = WORKER.read_text()
    assert "import nwt" not in source and "from nwt" not in source
    json.dumps({})  # (the contract is JSON lines)
