"""whisperx worker: runs inside the ASR venv (`make asr-env`), never imported by the main env.

whisperx 3.8.6 pins torch 2.8 + torchaudio, which cannot share the main env (torch 2.13, no
torchaudio), so the segment stage starts this file with the ASR venv's python and speaks JSON
lines over stdin/stdout. It uses only the standard library and whisperx, so it runs from a
checkout without installing nwt into that venv.

Contract (one JSON object per line each way; one response per request, in order):
  request:  {"audio": "/path/episode.mp4", "model": "large-v3", "language": "en",
             "device": "auto"|"cuda"|"cpu", "compute_type": ""|"float16"|"int8"|...,
             "batch_size": 16, "model_dir": "/abs/models/asr", "vad_method": "pyannote"|"silero"}
            every key is required: the values are params.yaml's segment.whisperx block, sent by
            nwt/data/asr/whisperx_client.py ("" compute_type: float16 on cuda, int8 on cpu)
  response: {"words": [{"word": str, "start_s": float, "end_s": float}, ...],
             "segments": [{"start_s": float, "end_s": float, "text": str}, ...],
             "language": str}
        or  {"error": "message a person can act on"}
Words whisperx could not time (e.g. numerals without alignable characters) are left out of
"words"; they stay in the segment text. Models are cached per (model, language, device) for the
life of the process. Everything whisperx prints goes to stderr, so stdout carries only the
protocol. EOF on stdin ends the worker.

Models: faster-whisper weights (`Systran/faster-whisper-<model>`) and the wav2vec2 alignment model
for the language are downloaded into `model_dir` on first use with network access; offline (set
HF_HUB_OFFLINE=1) they must already be there, and a missing one is reported as an error naming
that folder.
"""
from __future__ import annotations

import inspect
import json
import os
import sys

MODEL_HINT = ("whisperx models are fetched into {model_dir} on first use with network access "
              "(faster-whisper-{model} and the {language} wav2vec2 alignment model); offline, copy them there first")

REQUEST_KEYS = ("audio", "model", "language", "device", "compute_type", "batch_size", "model_dir", "vad_method")

_cache: dict = {}


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _supported(fn, **kwargs) -> dict:
    """Only the keyword arguments this whisperx version accepts (its signatures move between releases)."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _models(req: dict):
    import whisperx

    device = _device(req["device"])
    model, language = req["model"], req["language"]
    model_dir = os.path.abspath(req["model_dir"])
    compute_type = req["compute_type"] or ("float16" if device == "cuda" else "int8")
    key = (model, language, device, compute_type, model_dir)
    if key not in _cache:
        os.makedirs(model_dir, exist_ok=True)
        hint = MODEL_HINT.format(model_dir=model_dir, model=model, language=language)
        try:
            asr = whisperx.load_model(model, device, **_supported(
                whisperx.load_model, compute_type=compute_type, language=language, download_root=model_dir,
                vad_method=req["vad_method"],
                local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1"))
        except Exception as err:  # noqa: BLE001 - reported over the protocol
            raise RuntimeError(f"cannot load the whisper model {model!r}: {type(err).__name__}: {err}. {hint}") from err
        try:
            align_model, metadata = whisperx.load_align_model(**_supported(
                whisperx.load_align_model, language_code=language, device=device, model_dir=model_dir))
        except Exception as err:  # noqa: BLE001
            raise RuntimeError(f"cannot load the {language!r} alignment model: {type(err).__name__}: {err}. "
                               f"{hint}") from err
        _cache[key] = (asr, align_model, metadata, device)
    return _cache[key]


def transcribe(req: dict) -> dict:
    import whisperx

    if not os.path.exists(req["audio"]):
        raise FileNotFoundError(f"audio not found: {req['audio']!r}")
    asr, align_model, metadata, device = _models(req)
    audio = whisperx.load_audio(req["audio"])  # ffmpeg → 16 kHz mono float32
    result = asr.transcribe(audio, **_supported(asr.transcribe, batch_size=int(req["batch_size"]),
                                                language=req["language"]))
    aligned = whisperx.align(result["segments"], align_model, metadata, audio, device, return_char_alignments=False)
    words = [{"word": str(w["word"]).strip(), "start_s": round(float(w["start"]), 3),
              "end_s": round(float(w["end"]), 3)}
             for w in aligned.get("word_segments", []) if "start" in w and "end" in w and str(w["word"]).strip()]
    segments = [{"start_s": round(float(s["start"]), 3), "end_s": round(float(s["end"]), 3),
                 "text": str(s.get("text", "")).strip()}
                for s in aligned.get("segments", [])]
    return {"words": words, "segments": segments, "language": result.get("language", req["language"])}


def _protocol_channel():
    """stdout → a private protocol channel; fd 1 then points at stderr, so anything else written to
    stdout (by whisperx at import or run time, Python or C code) cannot corrupt the protocol."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def main() -> int:
    out = _protocol_channel()
    try:
        import whisperx  # noqa: F401 - fail at start, with the fix, when the env is wrong
    except ImportError as err:
        out.write(json.dumps({"error": f"whisperx is not importable in {sys.executable} ({err}); "
                                       "make the ASR env with `make asr-env`"}) + "\n")
        return 3
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or any(k not in req for k in REQUEST_KEYS):
                raise ValueError(f"a request is a JSON object with the keys {', '.join(REQUEST_KEYS)}")
            resp = transcribe(req)
        except Exception as err:  # noqa: BLE001 - every failure becomes an error response
            resp = {"error": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(resp) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
