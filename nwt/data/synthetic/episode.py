"""Render one synthetic presenter episode: an H.264+AAC mp4 and its ground-truth JSON.

An episode is template sentences spoken by espeak-ng with ≥ 0.4 s pauses, a presenter whose mouth
follows the phonemes, blinks and small head motion, a virtual camera that alternates wide and
close shots of a 1280×720 stage with face-less slide cut-aways in between, and raw frames piped
into ffmpeg. The truth JSON (cuts, shots, sentence/word/phoneme times, per-frame mouth opening and
face boxes) lets every later stage be scored.

Truth conventions:
- times in seconds; frames are 0-based video frame indices at `fps`; frame f covers
  [f/fps, (f+1)/fps) and its samples [f·spf, (f+1)·spf) with spf = sample_rate / fps.
- sentence start/end are the speech extent by energy (-40 dBFS, 10 ms frames).
- `mouth_open[f]` is the presenter's opening at the frame centre in *every* frame, also in slide
  frames and face-less episodes where the presenter is off screen (the speech track does not stop
  at a cut); use `face_boxes[f] is None` for visibility.
- `face_boxes[f]` is [x, y, w, h] of the first presenter's face ellipse (head rotation ignored,
  not clipped to the frame), or None when no presenter is on screen.
- `shots[i].kind` is "face" for a camera shot of the set (it shows no presenter when
  `faces_per_frame` is 0) and "slide" for a cut-away; `zoom` is None for slides.
- extra keys beyond the core schema: "presenters" (identity ids drawn in face shots, first = the
  one in `face_boxes`), "silence" ({"start_s", "end_s"} of the inserted silence, or None) and
  "config" (the SyntheticConfig used).

The mp4 and JSON are written under temporary names and moved into place (JSON last), so the JSON's
presence marks a complete episode and an interrupted run leaves no half file under a final name.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import wave
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path

import cv2
import numpy as np

from nwt.constants import Timing
from nwt.data.synthetic import presenter as pr
from nwt.data.synthetic.speech import synth
from nwt.data.synthetic.text import sentence
from nwt.params import MediaParams, SyntheticParams

LEAD_IN_S = 0.4  # silence before the first sentence
PAUSE_RANGE_S = (0.4, 1.2)  # between sentences; ≥ 0.4 s so segmentation has clean boundaries
TAIL_S = 0.2  # the last sentence ends at least this long before the episode does
FIT_TRIES = 3  # sentences tried for the remaining time before the episode ends in silence
SLIDE_RANGE_S = (1.5, 3.0)  # slide cut-away length
WIDE_ZOOM = (1.0, 1.4)
CLOSE_ZOOM = (1.6, 2.1)  # close shots still keep the whole head in frame
FRAMING_OFFSET = (0.04, 0.16)  # horizontal framing offset of the camera, × crop width
VERTICAL_FRAMING = (0.40, 0.50)
BLINK_PROFILE = (0.5, 1.0, 1.0, 0.6, 0.2)  # lid closure over 5 frames
BLINK_MEAN_GAP_S = 3.5
BLINK_MIN_GAP_FRAMES = 8
SWAY_PX, SWAY2_PX, BOB_PX, NOD_PX = 5.0, 3.0, 3.0, 4.0  # head motion amplitudes (stage pixels)
TILT_DEG, TILT2_DEG = 2.0, 1.0
NOD_SMOOTH_FRAMES = 5
AAC_BITRATE = "48k"
INT16_MAX = 32767
FILE_MODE = 0o644


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """How episodes are rendered; everything that is not drawn from the seed.

    `fps`, `sample_rate` (media section) and `identities` (download.synthetic) are params and have
    no default here; the rest are fixed render settings (tests vary the presenter layout).
    """

    width: int = 640
    height: int = 360
    fps: int
    sample_rate: int
    voice: str = "en-us"  # espeak voice family; identities append their variant
    identities: int  # episodes draw their presenter among the first N identities
    slide_fraction: float = 0.2  # expected fraction of shots that are slide cut-aways
    shot_min_s: float = 2.5
    shot_max_s: float = 7.0
    crf: int = 23
    preset: str = "veryfast"
    faces_per_frame: int = 1  # 0: face-less episode; 2: a second, different presenter beside the first
    silence_s: float = 0.0  # an idle silent stretch inserted mid-episode (tests segmentation)

    @classmethod
    def from_params(cls, media: MediaParams, synthetic: SyntheticParams, **settings) -> SyntheticConfig:
        """The default corpus's config (params.yaml's media rates and identities), other settings changed."""
        return cls(fps=media.fps, sample_rate=media.sample_rate, identities=synthetic.identities, **settings)

    def __post_init__(self) -> None:
        Timing(self.fps, self.sample_rate)  # samples per frame must be whole
        if not 1 <= self.identities <= len(pr.IDENTITIES):
            raise ValueError(f"identities must be in 1..{len(pr.IDENTITIES)}, got {self.identities}")
        if self.faces_per_frame not in (0, 1, 2):
            raise ValueError(f"faces_per_frame must be 0, 1 or 2, got {self.faces_per_frame}")
        if not 0 <= self.slide_fraction < 1:
            raise ValueError(f"slide_fraction must be in [0, 1), got {self.slide_fraction}")
        if not 0 < self.shot_min_s <= self.shot_max_s:
            raise ValueError(f"need 0 < shot_min_s <= shot_max_s, got {self.shot_min_s}, {self.shot_max_s}")
        if self.silence_s < 0:
            raise ValueError(f"silence_s must be >= 0, got {self.silence_s}")


class _Stream(IntEnum):
    """Independent random streams, so e.g. faces_per_frame=2 keeps the same speech and look."""

    IDENTITY = 0
    LOOK = 1
    TEXT = 2
    SHOTS = 3
    MOTION = 4
    SLIDES = 5
    SECOND = 6
    SECOND_MOTION = 7


def _rng(seed: int, stream: _Stream) -> np.random.Generator:
    return np.random.default_rng([seed, int(stream)])


@dataclass
class _Soundtrack:
    pcm: np.ndarray  # float32, exactly n_frames · samples_per_frame long
    sentences: list[dict]
    words: list[dict]
    phonemes: list[tuple[float, str]]
    mouth_phonemes: list[tuple[float, str]]  # phonemes plus a rest at each sentence end
    silence: dict | None


def _speak(rng: np.random.Generator, n_frames: int, config: SyntheticConfig, voice: str,
           look: pr.EpisodeLook) -> _Soundtrack:
    """Whole sentences laid out with pauses; the episode ends in silence rather than mid-sentence."""
    sr = config.sample_rate
    total_s = n_frames / config.fps
    pcm = np.zeros(n_frames * (sr // config.fps), np.float32)
    silence_at = (total_s - config.silence_s) / 2 if config.silence_s > 0 else None
    sentences, words, phonemes, mouth, silence = [], [], [], [], None
    cursor, last_end = LEAD_IN_S, 0.0
    while True:
        speech, start, silent_before = None, cursor, False
        for _ in range(FIT_TRIES):
            text = sentence(rng)
            candidate = synth(text, voice, look.rate, look.pitch, sample_rate=sr)
            length = candidate.offset_s - candidate.onset_s
            # the silence goes before the first sentence that would cross the episode's middle
            silent_before = silence_at is not None and silence is None and cursor + length > silence_at
            start = max(cursor, last_end + config.silence_s) if silent_before else cursor
            if start + length <= total_s - TAIL_S:
                speech = candidate
                break
        if speech is None:
            break
        if silent_before:
            silence = {"start_s": round(last_end, 4), "end_s": round(start, 4)}
        shift = start - speech.onset_s  # audio time -> episode time
        a = int(round(shift * sr))
        lo, hi = max(a, 0), min(a + len(speech.pcm), len(pcm))
        pcm[lo:hi] += speech.pcm[lo - a : hi - a]
        last_end = speech.offset_s + shift
        sentences.append({"start_s": round(start, 4), "end_s": round(last_end, 4), "text": text})
        words += [{"start_s": round(s + shift, 4), "end_s": round(e + shift, 4), "word": w} for s, e, w in speech.words]
        sent_ph = [(max(t + shift, 0.0), p) for t, p in speech.phonemes]
        phonemes += sent_ph
        mouth += sent_ph + ([(last_end, "_")] if not sent_ph or sent_ph[-1][0] < last_end else [])
        cursor = last_end + float(rng.uniform(*PAUSE_RANGE_S))
    if silence_at is not None and silence is None:  # nothing fitted after it: the tail is the silence
        silence = {"start_s": round(last_end, 4), "end_s": round(total_s, 4)}
    return _Soundtrack(pcm, sentences, words, phonemes, mouth, silence)


@dataclass
class _Shot:
    start_frame: int
    end_frame: int
    kind: str
    zoom: float | None
    u: float = 0.5  # horizontal framing (0.5 = anchor centred)
    v: float = 0.5

    def to_json(self) -> dict:
        zoom = None if self.zoom is None else round(self.zoom, 4)
        return {"start_frame": self.start_frame, "end_frame": self.end_frame, "kind": self.kind, "zoom": zoom}


def _plan_shots(rng: np.random.Generator, n_frames: int, config: SyntheticConfig) -> list[_Shot]:
    """Face shots alternate wide/close (and framing side) so every cut is a clear visual change;
    slides only follow face shots. A shot never leaves a stub shorter than a slide at the end."""
    p_slide = config.slide_fraction / (1 - config.slide_fraction)  # slides per face shot
    min_tail = int(SLIDE_RANGE_S[0] * config.fps)
    shots: list[_Shot] = []
    n_face, f = 0, 0
    while f < n_frames:
        is_slide = bool(shots) and shots[-1].kind == "face" and rng.random() < p_slide
        span = SLIDE_RANGE_S if is_slide else (config.shot_min_s, config.shot_max_s)
        length = int(rng.uniform(*span) * config.fps)
        if n_frames - (f + length) < min_tail:
            length = n_frames - f
        if is_slide:
            shots.append(_Shot(f, f + length, "slide", None))
        else:
            zoom = float(rng.uniform(*(WIDE_ZOOM if n_face % 2 == 0 else CLOSE_ZOOM)))
            side = 1 if n_face % 4 < 2 else -1
            u = 0.5 + side * float(rng.uniform(*FRAMING_OFFSET))
            shots.append(_Shot(f, f + length, "face", zoom, u, float(rng.uniform(*VERTICAL_FRAMING))))
            n_face += 1
        f += length
    return shots


def _blinks(rng: np.random.Generator, n_frames: int, fps: int) -> np.ndarray:
    blink = np.zeros(n_frames)
    f = int(rng.integers(10, 60))
    while f < n_frames:
        seg = blink[f : f + len(BLINK_PROFILE)]
        seg[:] = BLINK_PROFILE[: len(seg)]
        f += int(rng.exponential(BLINK_MEAN_GAP_S * fps)) + BLINK_MIN_GAP_FRAMES
    return blink


def _head_motion(rng: np.random.Generator, n_frames: int, fps: int, loudness: np.ndarray | None):
    """Slow sway, bob and tilt; the head dips a little with loudness, like a nod on stressed words."""
    t = np.arange(n_frames) / fps
    ph = rng.uniform(0, 2 * np.pi, 5)
    dx = SWAY_PX * np.sin(0.7 * t + ph[0]) + SWAY2_PX * np.sin(1.9 * t + ph[1])
    dy = BOB_PX * np.sin(0.5 * t + ph[2])
    if loudness is not None:
        dy = dy + NOD_PX * np.convolve(loudness, np.ones(NOD_SMOOTH_FRAMES) / NOD_SMOOTH_FRAMES, "same")
    tilt = TILT_DEG * np.sin(0.4 * t + ph[3]) + TILT2_DEG * np.sin(1.3 * t + ph[4])
    return dx, dy, tilt


@dataclass
class _OnScreen:
    """One presenter as drawn: identity, sprite and per-frame animation."""

    identity: pr.Identity
    x: float  # face centre on the stage, pixels
    sprite: np.ndarray
    alpha: np.ndarray
    opening: np.ndarray
    width: np.ndarray
    blink: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    tilt: np.ndarray

    def transform(self, f: int) -> np.ndarray:
        """3×3 sprite -> stage transform at frame f."""
        m = cv2.getRotationMatrix2D((pr.SPRITE_HX, pr.SPRITE_HY), float(self.tilt[f]), 1.0)
        m[0, 2] += self.x - pr.SPRITE_HX + self.dx[f]
        m[1, 2] += pr.FACE_Y - pr.SPRITE_HY + self.dy[f]
        return np.vstack([m, [0, 0, 1]])


def _camera(shot: _Shot, anchor_x: float, config: SyntheticConfig) -> np.ndarray:
    """3×3 stage -> frame transform of a shot (crop of stage/zoom around the anchor, scaled)."""
    cw, ch = pr.STAGE_W / shot.zoom, pr.STAGE_H / shot.zoom
    ccx = np.clip(anchor_x - (shot.u - 0.5) * cw, cw / 2, pr.STAGE_W - cw / 2)
    ccy = np.clip(pr.FACE_Y - (shot.v - 0.5) * ch, ch / 2, pr.STAGE_H - ch / 2)
    sx, sy = config.width / cw, config.height / ch
    return np.array([[sx, 0, -(ccx - cw / 2) * sx], [0, sy, -(ccy - ch / 2) * sy], [0, 0, 1]])


def _write_wav(path: str, pcm: np.ndarray, sample_rate: int) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(pcm, -1, 1) * INT16_MAX).astype(np.int16).tobytes())


def _ffmpeg(wav: str, out: str, config: SyntheticConfig, comment: str) -> subprocess.Popen:
    cmd = [
        "ffmpeg", "-y", "-nostdin", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{config.width}x{config.height}", "-r", str(config.fps),
        "-i", "-", "-i", wav,
        "-c:v", "libx264", "-preset", config.preset, "-crf", str(config.crf), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", AAC_BITRATE, "-ar", str(config.sample_rate), "-ac", "1",
        "-shortest", "-metadata", f"comment={comment}", "-f", "mp4", out,
    ]
    try:
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as err:
        raise RuntimeError("ffmpeg is missing: apt-get install ffmpeg") from err


def _temp_path(out_dir: Path, name: str) -> str:
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=out_dir)
    os.close(fd)
    return path


def render_episode(episode_id: str, seed: int, seconds: float, out_dir: Path, config: SyntheticConfig) -> dict:
    """Render `out_dir/{episode_id}.mp4` and `out_dir/{episode_id}.truth.json` from `seed`.

    The same seed and config give the same truth JSON. Returns a small summary:
    episode_id, seconds, n_frames, bytes, render_s.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = config.fps
    n_frames = int(round(seconds * fps))
    if n_frames <= 0:
        raise ValueError(f"seconds must give at least one frame, got {seconds}")

    identity_id = int(_rng(seed, _Stream.IDENTITY).integers(config.identities))
    identity = pr.IDENTITIES[identity_id]
    look = pr.random_look(_rng(seed, _Stream.LOOK), identity)
    track = _speak(_rng(seed, _Stream.TEXT), n_frames, config, config.voice + identity.voice_variant, look)
    opening, width = pr.mouth_track(track.mouth_phonemes, n_frames, fps, pr.loudness(track.pcm, config.sample_rate))
    shots = _plan_shots(_rng(seed, _Stream.SHOTS), n_frames, config)
    scene = _cast(seed, n_frames, config, identity_id, look, track.pcm, opening, width)

    out_mp4 = out_dir / f"{episode_id}.mp4"
    out_json = out_dir / f"{episode_id}.truth.json"
    tmp_mp4 = _temp_path(out_dir, f"{episode_id}.mp4")
    tmp_json = _temp_path(out_dir, f"{episode_id}.truth.json")
    fd, wav = tempfile.mkstemp(suffix=".wav", prefix=f"nwt-{episode_id}-")
    os.close(fd)
    try:
        _write_wav(wav, track.pcm, config.sample_rate)
        face_boxes = _encode(episode_id, wav, tmp_mp4, config, f"nwt.data.synthetic episode={episode_id} seed={seed}",
                             shots, scene, _rng(seed, _Stream.SLIDES))
        truth = {
            "episode_id": episode_id,
            "seed": seed,
            "fps": fps,
            "sample_rate": config.sample_rate,
            "width": config.width,
            "height": config.height,
            "n_frames": n_frames,
            "duration_s": n_frames / fps,
            "look": look.to_json(),
            "identity": identity_id,
            "shots": [s.to_json() for s in shots],
            "cuts": [s.start_frame for s in shots[1:]],
            "sentences": track.sentences,
            "words": track.words,
            "phonemes": [{"time_s": round(t, 4), "symbol": p} for t, p in track.phonemes],
            "mouth_open": [round(float(v), 4) for v in opening],
            "face_boxes": face_boxes,
            "presenters": scene.ids,
            "silence": track.silence,
            "config": asdict(config),
        }
        with open(tmp_json, "w") as fh:
            json.dump(truth, fh)
        for path in (tmp_mp4, tmp_json):
            os.chmod(path, FILE_MODE)  # mkstemp makes 0600 files
        os.replace(tmp_mp4, out_mp4)
        os.replace(tmp_json, out_json)  # last: its presence marks a complete episode
    finally:
        for path in (wav, tmp_mp4, tmp_json):
            if os.path.exists(path):
                os.remove(path)
    return {
        "episode_id": episode_id,
        "seconds": n_frames / fps,
        "n_frames": n_frames,
        "bytes": out_mp4.stat().st_size,
        "render_s": round(time.perf_counter() - t0, 3),
    }


@dataclass
class _Scene:
    """Who is on the stage: presenter identity ids (first = the speaker), their animation, the set."""

    ids: list[int]
    presenters: list[_OnScreen]
    stage: np.ndarray
    anchor_x: float  # the camera's horizontal anchor on the stage, pixels


def _cast(seed: int, n_frames: int, config: SyntheticConfig, identity_id: int, look: pr.EpisodeLook,
          pcm: np.ndarray, opening: np.ndarray, width: np.ndarray) -> _Scene:
    """The speaker (mouth, blinks, sway that dips with loudness) and, with faces_per_frame 2, a listener."""
    fps, spf = config.fps, config.sample_rate // config.fps
    rms = np.sqrt(np.mean(pcm.reshape(n_frames, spf).astype(np.float64) ** 2, axis=1))
    loudness = rms / (rms.max() + 1e-6)
    motion = _rng(seed, _Stream.MOTION)
    presenters: list[_OnScreen] = []
    ids = [identity_id, (identity_id + 1) % len(pr.IDENTITIES)][: config.faces_per_frame]
    px = look.presenter_x * pr.STAGE_W
    second_side = -1 if look.presenter_x >= 0.5 else 1
    second_look = pr.random_look(_rng(seed, _Stream.SECOND), pr.IDENTITIES[ids[-1]]) if len(ids) > 1 else look
    for k, pid in enumerate(ids):
        ident = pr.IDENTITIES[pid]
        hair = (look.hair_style, look.hair_colour) if k == 0 else (second_look.hair_style, second_look.hair_colour)
        sprite, alpha = pr.head_sprite(ident, *hair)
        if k == 0:
            anim = (opening, width, _blinks(motion, n_frames, fps), *_head_motion(motion, n_frames, fps, loudness))
        else:  # the second presenter listens: mouth closed, own blinks and sway
            other = _rng(seed, _Stream.SECOND_MOTION)
            anim = (np.zeros(n_frames), np.full(n_frames, pr.REST_WIDTH), _blinks(other, n_frames, fps),
                    *_head_motion(other, n_frames, fps, None))
        x = px + k * second_side * pr.SECOND_PRESENTER_DX * pr.STAGE_W
        presenters.append(_OnScreen(ident, x, sprite, alpha, *anim))
    bodies = [(p.x / pr.STAGE_W, (look if k == 0 else second_look).shirt) for k, p in enumerate(presenters)]
    stage = pr.stage_background(look, bodies)
    anchor_x = float(np.mean([p.x for p in presenters])) if presenters else px
    return _Scene(ids, presenters, stage, anchor_x)


def _encode(episode_id: str, wav: str, out: str, config: SyntheticConfig, comment: str, shots: list[_Shot],
            scene: _Scene, slide_rng: np.random.Generator) -> list[list[float] | None]:
    """Draw every frame into ffmpeg (with the soundtrack `wav`) → the first presenter's face box per frame."""
    face_boxes: list[list[float] | None] = []
    enc = _ffmpeg(wav, out, config, comment)
    try:
        for shot in shots:
            _draw_shot(enc.stdin, shot, scene, config, slide_rng, face_boxes)
        enc.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg died; its stderr below says why
    except BaseException:
        enc.kill()
        enc.wait()
        raise
    err = enc.stderr.read().decode(errors="replace")
    if enc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed for {episode_id}: {err.strip()}")
    return face_boxes


def _draw_shot(sink, shot: _Shot, scene: _Scene, config: SyntheticConfig, slide_rng: np.random.Generator,
               face_boxes: list[list[float] | None]) -> None:
    """Write one shot's frames (BGR bytes) to `sink`, appending each frame's face box (None: no presenter)."""
    if shot.kind == "slide":
        frame = pr.slide(slide_rng, config.width, config.height)
        for _ in range(shot.start_frame, shot.end_frame):
            sink.write(frame.data)
            face_boxes.append(None)
        return
    cam = _camera(shot, scene.anchor_x, config)
    bg = cv2.warpAffine(scene.stage, cam[:2], (config.width, config.height), flags=cv2.INTER_LINEAR)
    for f in range(shot.start_frame, shot.end_frame):
        frame = bg.copy()
        for i, p in enumerate(scene.presenters):
            sprite = p.sprite.copy()
            pr.draw_dynamic(sprite, p.identity, p.opening[f], p.width[f], p.blink[f])
            m = cam @ p.transform(f)
            pr.composite(frame, sprite, p.alpha, m[:2])
            if i == 0:
                cx, cy = m[:2] @ (pr.SPRITE_HX, pr.SPRITE_HY, 1.0)
                w, h = 2 * pr.FACE_A * cam[0, 0], 2 * pr.FACE_B * cam[1, 1]
                face_boxes.append([round(float(v), 2) for v in (cx - w / 2, cy - h / 2, w, h)])
        if not scene.presenters:
            face_boxes.append(None)
        sink.write(frame.data)
