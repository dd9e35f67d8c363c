"""A codec anchor for the lip-sync scores: the ground truth through a standard codec.

LSE-D and LSE-C of a reconstruction fall short of the ground truth's partly because any lossy
coding removes some of the mouth the sync expert reads. Scoring the ground truth through
intra-only libx264 (every frame coded on its own, as the dVAE codes it) at a CRF whose PSNR is
near the dVAE's tells how much of that shortfall a standard codec at the same fidelity shows,
and so how far the dVAE's losses sit where the lip sync lives. evaluate reports it under `codec`.
(Measured CRF / PSNR / LSE points are in docs/experiments.md.)
"""
from __future__ import annotations

import numpy as np

from nwt.eval.codec import PRESET, decode_h264, encode_h264


def x264_round_trip(frames: np.ndarray, fps: int, crf: float, intra_only: bool = True,
                    preset: str = PRESET) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB through libx264 (yuv420p) and back: what the codec keeps at `crf`."""
    t, h, w, _ = frames.shape
    decoded = decode_h264(encode_h264(frames, fps, crf, intra_only, preset), h, w)
    if len(decoded) != t:
        raise RuntimeError(f"x264 round trip gave {len(decoded)} frames for {t}")
    return decoded
