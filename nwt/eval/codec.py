"""Rate–distortion of the dVAE beside libx264 on the same 256×224 val clips.

The dVAE spends a fixed `bits_per_frame` (grid × heads × log2(num_codes)); x264 is swept over
its constant-rate factor (CRF), once with inter prediction (x264 defaults: GOP 250, B-frames)
and once intra-only (`keyint=1`, no B-frames: every frame an IDR frame, like the per-frame dVAE).

Definitions:
- PSNR: `nwt.eval.metrics.psnr_db`, per-frame RGB PSNR, 10·log10(255² / MSE) over all pixels and
  channels of one frame (identical frames count as 100 dB), **averaged over frames** — all
  evaluated frames of all clips pooled, each frame weighing the same. `eval_stride` picks
  frames `[::eval_stride]` of each clip, the same rule as train_dvae's `val_frame_stride`.
- bits per frame: bytes of the H.264 elementary stream (Annex B, no container) × 8 / frames
  encoded; counted are the slice NAL units and the parameter sets (SPS/PPS), not the start
  codes and not x264's SEI banner (its version and option string, ≈ 700 bytes per stream,
  which no decoder needs). Every frame of a clip is encoded, whatever `eval_stride` is.
- Pixels: RGB → yuv420p (BT.601, limited range: ffmpeg's defaults, with accurate rounding and
  full chroma interpolation) → x264 (`PRESET`, 8-bit, one thread) → decoder → RGB. So even the
  best x264 point carries the 4:2:0 chroma loss, as any real H.264 deployment does.

Comparisons interpolate the x264 curve piecewise linearly in log2(bits) (PSNR at the dVAE's
bits) and in PSNR (log2 bits at the dVAE's PSNR); a target outside the sweep gives None and a
note saying "outside sweep", never an extrapolated figure.
"""
from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nwt.atomic import write_json
from nwt.data.media import require_ffmpeg
from nwt.eval.metrics import psnr_per_frame

PRESET = "medium"
CRFS = (10, 18, 26, 34, 40, 45, 48, 51)  # x264 8-bit CRF ends at 51; denser where the dVAE lies
INTRA_PARAMS = "keyint=1:min-keyint=1:scenecut=0:bframes=0"
# NAL unit types counted as the video stream: non-IDR slice, slice partitions, IDR slice, SPS, PPS
COUNTED_NAL_TYPES = frozenset({1, 2, 3, 4, 5, 7, 8})
SWS_FLAGS = "bicubic+accurate_rnd+full_chroma_int"


# ------------------------------------------------------------------------------------ H.264 I/O
def nal_units(stream: bytes) -> list[bytes]:
    """Split an Annex B byte stream at its start codes (00 00 01 / 00 00 00 01) → NAL units."""
    units, i, n = [], stream.find(b"\x00\x00\x01"), len(stream)
    while 0 <= i < n:
        start = i + 3
        nxt = stream.find(b"\x00\x00\x01", start)
        end = n if nxt < 0 else nxt
        unit = stream[start:end].rstrip(b"\x00")  # the zero byte of a 4-byte start code / trailing zeros
        if unit:
            units.append(unit)
        i = nxt
    return units


def video_stream_bytes(stream: bytes) -> int:
    """Bytes of the slice and parameter-set NAL units (no start codes, no SEI, no AUD)."""
    return sum(len(u) for u in nal_units(stream) if (u[0] & 0x1F) in COUNTED_NAL_TYPES)


def encode_h264(frames: np.ndarray, fps: int, crf: float, intra_only: bool, preset: str = PRESET) -> bytes:
    """(T, H, W, 3) uint8 RGB → H.264 Annex B elementary stream (libx264, yuv420p)."""
    require_ffmpeg()
    t, h, w, _ = frames.shape
    params = INTRA_PARAMS if intra_only else ""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-sws_flags", SWS_FLAGS,
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p", "-threads", "1"]
    if params:
        cmd += ["-x264-params", params]
    cmd += ["-f", "h264", "-"]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames, np.uint8).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"x264 encoding failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def decode_h264(stream: bytes, height: int, width: int) -> np.ndarray:
    """H.264 Annex B stream → (T, H, W, 3) uint8 RGB."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-threads", "1", "-f", "h264", "-i", "-",
           "-sws_flags", SWS_FLAGS, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, input=stream, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"H.264 decoding failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, height, width, 3)


# ------------------------------------------------------------------------------------ the sweep
def _sweep_point(clips: Sequence[np.ndarray], fps: int, crf: float, intra_only: bool, preset: str,
                 eval_stride: int) -> dict:

    streams = [encode_h264(clip, fps, crf, intra_only, preset) for clip in clips]
    # one decoder for all clips: each stream starts with its own SPS/PPS and IDR frame, so the
    # concatenation is a valid Annex B stream (saves a process start per clip)
    decoded = decode_h264(b"".join(streams), clips[0].shape[1], clips[0].shape[2])
    lengths = [len(c) for c in clips]
    if len(decoded) != sum(lengths):
        raise RuntimeError(f"x264 round trip gave {len(decoded)} frames for {sum(lengths)}")
    ends = np.cumsum(lengths)
    psnrs = [psnr_per_frame(clip[::eval_stride], decoded[end - len(clip) : end][::eval_stride])
             for clip, end in zip(clips, ends)]
    bits = 8 * sum(video_stream_bytes(stream) for stream in streams)
    return dict(crf=crf, bits_per_frame=bits / sum(lengths), psnr_db=float(np.concatenate(psnrs).mean()),
                frames=int(sum(lengths)))


def x264_rd_curve(
    clips_frames: Sequence[np.ndarray],
    fps: int,
    crfs: Iterable[float] = CRFS,
    intra_only: bool = False,
    *,
    preset: str = PRESET,
    eval_stride: int = 1,
    workers: int = 2,
) -> list[dict]:
    """One row per CRF: {crf, bits_per_frame, psnr_db, frames}, sorted by bits.

    Each clip (T, H, W, 3) uint8 RGB is encoded as its own stream; bits are pooled over all
    clips (total bits / total frames) and PSNR is the mean per-frame PSNR over frames
    `[::eval_stride]` of every clip (the dVAE's definition, see the module docstring).
    `workers` CRFs run at once (one-thread encoders: the result does not depend on it)."""
    from concurrent.futures import ThreadPoolExecutor

    clips = [np.ascontiguousarray(c, np.uint8) for c in clips_frames if len(c)]
    if not clips:
        raise ValueError("no frames to encode")
    if len({c.shape[1:] for c in clips}) != 1:
        raise ValueError("all clips must have the same frame size")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(pool.map(lambda crf: _sweep_point(clips, fps, crf, intra_only, preset, eval_stride), crfs))
    return sorted(rows, key=lambda r: r["bits_per_frame"])


# ------------------------------------------------------------------------------------ comparison
def psnr_at_bits(curve: Sequence[dict], bits_per_frame: float) -> float | None:
    """PSNR of the curve at `bits_per_frame`, linear in log2(bits); None outside the sweep."""
    pts = sorted((math.log2(r["bits_per_frame"]), r["psnr_db"]) for r in curve if r["bits_per_frame"] > 0)
    if not pts or bits_per_frame <= 0:
        return None
    x = math.log2(bits_per_frame)
    if not pts[0][0] <= x <= pts[-1][0]:
        return None
    return float(np.interp(x, [p[0] for p in pts], [p[1] for p in pts]))


def bits_at_psnr(curve: Sequence[dict], psnr: float) -> float | None:
    """Bits per frame the curve needs for `psnr` (log2 bits linear in PSNR); None outside the sweep."""
    pts = sorted((r["psnr_db"], math.log2(r["bits_per_frame"])) for r in curve if r["bits_per_frame"] > 0)
    if not pts or not pts[0][0] <= psnr <= pts[-1][0]:
        return None
    return float(2 ** np.interp(psnr, [p[0] for p in pts], [p[1] for p in pts]))


def _compare_one(curve: Sequence[dict], bits: float, psnr: float) -> dict:
    lo_b, hi_b = min(r["bits_per_frame"] for r in curve), max(r["bits_per_frame"] for r in curve)
    lo_p, hi_p = min(r["psnr_db"] for r in curve), max(r["psnr_db"] for r in curve)
    out = {
        "psnr_db_at_same_bits": psnr_at_bits(curve, bits),
        "bits_at_same_psnr": bits_at_psnr(curve, psnr),
        "sweep_bits_per_frame_min": lo_b, "sweep_bits_per_frame_max": hi_b,
        "sweep_psnr_db_min": lo_p, "sweep_psnr_db_max": hi_p,
    }
    notes = []
    if out["psnr_db_at_same_bits"] is None:
        notes.append(f"psnr_db_at_same_bits: {bits:.0f} bits/frame is outside sweep [{lo_b:.0f}, {hi_b:.0f}]")
    if out["bits_at_same_psnr"] is None:
        notes.append(f"bits_at_same_psnr: {psnr:.2f} dB is outside sweep [{lo_p:.2f}, {hi_p:.2f}] dB")
    if out["bits_at_same_psnr"] is not None:
        out["bits_ratio_x264_over_dvae"] = out["bits_at_same_psnr"] / bits
    if notes:
        out["note"] = "; ".join(notes)
    return out


def compare_with_x264(curve_inter: Sequence[dict], curve_intra: Sequence[dict],
                      dvae_bits_per_frame: float, dvae_psnr_db: float) -> dict:
    """{"x264": {...}, "x264_intra": {...}}: each with `psnr_db_at_same_bits`,
    `bits_at_same_psnr` (None + `note` when outside the sweep), the sweep's range, and
    `bits_ratio_x264_over_dvae` (> 1: x264 needs more bits than the dVAE for its PSNR)."""
    return {"x264": _compare_one(curve_inter, dvae_bits_per_frame, dvae_psnr_db),
            "x264_intra": _compare_one(curve_intra, dvae_bits_per_frame, dvae_psnr_db)}


def rd_rows(curve_inter: Sequence[dict], curve_intra: Sequence[dict],
            dvae_bits_per_frame: float | None = None, dvae_psnr_db: float | None = None) -> list[dict]:
    """DVC-plot rows {codec, bits_per_frame, psnr_db, crf} for x264, x264_intra and the dVAE point."""
    rows = [dict(codec=name, bits_per_frame=r["bits_per_frame"], psnr_db=r["psnr_db"], crf=r["crf"])
            for name, curve in (("x264", curve_inter), ("x264_intra", curve_intra)) for r in curve]
    if dvae_bits_per_frame is not None and dvae_psnr_db is not None:
        rows.append(dict(codec="dvae", bits_per_frame=float(dvae_bits_per_frame), psnr_db=float(dvae_psnr_db),
                         crf=None))
    return rows


# ------------------------------------------------------------------------------------ stage helper
RD_MAX_FRAMES = 320  # val frames swept by the stage: 7 CRFs × 2 modes stay ≈ 30 s on 2 loaded cores


def pick_clips(lengths: Sequence[int], max_frames: int | None) -> list[int]:
    """Indices of the most clips, evenly spread over the split (in order), whose frames total
    ≤ `max_frames`; always at least one clip."""
    everything = list(range(len(lengths)))
    if max_frames is None or sum(lengths) <= max_frames:
        return everything
    for n in range(len(lengths) - 1, 0, -1):
        kept = sorted(set(np.linspace(0, len(lengths) - 1, n).round().astype(int).tolist()))
        if sum(lengths[i] for i in kept) <= max_frames:
            return kept
    return [int(np.argmin(lengths))]


def load_clips_frames(paths: Sequence[str], max_frames: int | None = None) -> list[np.ndarray]:
    """Frames (T, H, W, 3) uint8 RGB of whole clips of the shards, subsampled by `pick_clips`."""
    from nwt.data.shards import iter_clips

    clips = [c.frames for c in iter_clips(paths) if len(c.frames)]
    return [clips[i] for i in pick_clips([len(c) for c in clips], max_frames)]


def x264_report(clips_frames: Sequence[np.ndarray], fps: int, dvae_bits_per_frame: float | None,
                dvae_psnr_db: float | None, out_json: str | Path, *, crfs: Iterable[float] = CRFS,
                eval_stride: int = 1, preset: str = PRESET) -> dict:
    """Sweep x264 (inter and intra-only), write the RD rows to `out_json`, return the nested
    metrics {"x264": {...}, "x264_intra": {...}} (comparisons need the dVAE's point)."""
    import time

    t0 = time.perf_counter()
    crfs = tuple(crfs)
    inter = x264_rd_curve(clips_frames, fps, crfs, intra_only=False, preset=preset, eval_stride=eval_stride)
    intra = x264_rd_curve(clips_frames, fps, crfs, intra_only=True, preset=preset, eval_stride=eval_stride)
    write_json(out_json, rd_rows(inter, intra, dvae_bits_per_frame, dvae_psnr_db))
    if dvae_bits_per_frame is None or dvae_psnr_db is None:
        metrics: dict = {"x264": {}, "x264_intra": {}}
    else:
        metrics = compare_with_x264(inter, intra, dvae_bits_per_frame, dvae_psnr_db)
    wall = round(time.perf_counter() - t0, 2)
    for key in metrics:
        metrics[key].update(preset=preset, clips=len(clips_frames), frames=inter[0]["frames"],
                            eval_stride=eval_stride, wall_s=wall)
    return metrics


def rd_against_dvae(val_paths: Sequence[str], dvae_metrics: dict, out_json: str | Path, fps: int,
                    eval_stride: int, max_frames: int | None = RD_MAX_FRAMES) -> dict:
    """The train_dvae stage's call: x264 on the val clips beside the dVAE's `val.psnr_db` and
    `bits_per_frame` (from train_dvae's result); {} when there is no val PSNR (no val shards,
    an interrupted run, or a DDP rank other than 0)."""
    psnr = (dvae_metrics.get("val") or {}).get("psnr_db")
    bits = dvae_metrics.get("bits_per_frame")
    if not val_paths or psnr is None or bits is None:
        return {}
    clips = load_clips_frames(val_paths, max_frames)
    if not clips:
        return {}
    return x264_report(clips, fps, bits, psnr, out_json, eval_stride=eval_stride)
