"""Time and sample-rate constants, checked at import (as openai/whisper's audio.py does).

Video frames, audio samples and log-mel frames must line up exactly: one video frame is
`samples_per_frame` audio samples and `MELS_PER_FRAME` mel hops. Other rates (the paper's
30 fps / 24 kHz) are params; `Timing` checks any pair.
"""
from __future__ import annotations

from dataclasses import dataclass

CROP_H, CROP_W = 256, 224  # face crop, height × width (the paper's crop)
MELS_PER_FRAME = 4  # mel hop = samples per video frame / 4
N_MELS = 80
MEL_WINDOW_S = 0.025  # 25 ms analysis window


@dataclass(frozen=True)
class Timing:
    fps: int = 25
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got {self.fps}, {self.sample_rate}")
        if self.sample_rate % self.fps:
            raise ValueError(
                f"sample_rate {self.sample_rate} is not a whole number of samples per frame at {self.fps} fps"
            )
        if (self.sample_rate // self.fps) % MELS_PER_FRAME:
            raise ValueError(
                f"{self.sample_rate // self.fps} samples per frame do not split into {MELS_PER_FRAME} mel hops"
            )

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps  # 640 at 25 fps / 16 kHz

    @property
    def mel_hop(self) -> int:
        return self.samples_per_frame // MELS_PER_FRAME  # 160 = 10 ms at 16 kHz

    @property
    def mel_window(self) -> int:
        return int(round(MEL_WINDOW_S * self.sample_rate))  # 400 at 16 kHz


DEFAULT_TIMING = Timing()
FPS = DEFAULT_TIMING.fps
SAMPLE_RATE = DEFAULT_TIMING.sample_rate
