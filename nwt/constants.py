"""Fixed sizes, time and sample-rate constants, checked at import (as openai/whisper's audio.py does).

Video frames, audio samples and log-mel frames must line up exactly: one video frame is
`samples_per_frame` audio samples and `MELS_PER_FRAME` mel hops. The rates themselves are
params (media.fps, media.sample_rate; the paper's 30 fps / 24 kHz work too); `Timing` checks any
pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CROP_H, CROP_W = 256, 224  # face crop, height × width (the paper's crop)
MELS_PER_FRAME = 4  # mel hop = samples per video frame / 4
N_MELS = 80
MEL_WINDOW_S = 0.025  # 25 ms analysis window
# where `dvc repro` writes the trained models (dvc.yaml outs), relative to the checkout
DVAE_MODEL = Path("models/dvae/dvae.pt")
PRIOR_MODEL = Path("models/prior/prior.pt")


@dataclass(frozen=True)
class Timing:
    fps: int  # video frames per second (params media.fps)
    sample_rate: int  # audio samples per second (params media.sample_rate)

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

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: object = "the checkpoint") -> Timing:
        """The Timing a model was trained at: its checkpoint's {"fps", "sample_rate"} dict."""
        saved = ckpt.get("timing")
        if not isinstance(saved, dict) or not {"fps", "sample_rate"} <= set(saved):
            raise ValueError(f"{path} holds no timing {{fps, sample_rate}}: it was not written by nwt's trainers")
        return cls(int(saved["fps"]), int(saved["sample_rate"]))
