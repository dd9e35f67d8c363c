"""Speech detection and word timing for the segment stage.

- `vad`: speech spans from webrtcvad (no model) or silero-vad (TorchScript model inside the wheel).
- `align`: pocketsphinx forced alignment of a known transcript (en-us model inside the wheel).
- `recognize`: pocketsphinx word recognition (en-us model + LM inside the wheel) for word edges
  where no transcript is known (`segment.backend: auto`).
- `whisperx_client` / `whisperx_worker`: the production path, whisperx transcription + wav2vec2 word
  alignment in its own virtualenv (`make asr-env`), spoken to over a JSON-lines pipe.

Every backend hands back times in seconds of the episode's audio.
"""
