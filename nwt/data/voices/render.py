"""Test-only clips of the presenter speaking in held-out voices, in the look of a trained episode.

A clip is one test sentence spoken by one voice (`nwt.data.voices.engines`), laid between
`lead_s` and `tail_s` of silence; the presenter's mouth follows that audio's own phone times and
loudness (`presenter.mouth_track`, as in the training corpus). The presenter is drawn by the
corpus's own renderer (`nwt.data.synthetic.episode`) in the look of a trained episode (its seed:
hair, shirt, set, blinks, sway), framed by one face shot, encoded to H.264 + AAC like an episode,
decoded again and cropped to 256×224 the way the faces stage frames a face (the truth face box,
`faces.face_scale`, `faces.centre_shift`, `faces.smooth_s`). So a clip has what a test clip of
data/shards has — the same codec path, crop and sample format — and a ground truth for a voice
the models never heard.

Sentence k is shown in trained look k (cycling) with the same framing for every voice: voices
differ only in their audio (and the mouth that follows it), which keeps per-voice figures paired.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nwt.constants import Timing
from nwt.data.faces import moving_average
from nwt.data.media import iter_frames, read_audio
from nwt.data.shards import ShardWriter, clip_sample
from nwt.data.synthetic import episode as ep
from nwt.data.synthetic import presenter as pr
from nwt.data.synthetic.text import sentence
from nwt.data.voices.engines import SILENCE, Utterance, check_engine, speak
from nwt.geometry import crop_centre, crop_frame
from nwt.params import FacesParams, VoiceParams, VoicesParams

SPLIT = "unseen"  # the shards' split name: never a training split
SENTENCE_STREAM, FRAMING_STREAM = 0, 1  # rng streams under voices.seed: the test sentences, each clip's framing
MAX_SENTENCE_DRAWS = 1000
CLOSE_SHARE = 0.5  # share of clips framed as close shots (the others wide), as the episodes alternate


@dataclass(frozen=True)
class Look:
    """A trained episode's look, rebuilt from its truth JSON (the renderer needs seed and config)."""

    episode_id: str
    episode_index: int
    seed: int
    identity: int
    look: pr.EpisodeLook
    config: ep.SyntheticConfig
    voice: str  # the espeak voice the presenter speaks in this episode (a training voice)


def episode_look(truth: dict, episode_index: int, timing: Timing) -> Look:
    """The Look of a rendered synthetic episode; rendered at the pipeline's fps and sample rate."""
    look = pr.EpisodeLook(**{k: tuple(v) if isinstance(v, list) else v for k, v in truth["look"].items()})
    config = ep.SyntheticConfig(**dict(truth["config"], fps=timing.fps, sample_rate=timing.sample_rate))
    identity = int(truth["identity"])
    voice = config.voice + pr.IDENTITIES[identity].voice_variant
    return Look(truth["episode_id"], episode_index, int(truth["seed"]), identity, look, config, voice)


def check_unseen(voices: tuple[VoiceParams, ...], training_voices: set[str]) -> None:
    """Stop if a held-out voice is one the presenter speaks in a training episode."""
    clash = sorted(v.voice for v in voices if v.engine == "espeak" and v.voice in training_voices)
    if clash:
        raise ValueError(f"voices.voices lists {', '.join(clash)}, which the presenter speaks in training "
                         f"episodes ({', '.join(sorted(training_voices))}): a held-out voice must be unseen")
    names = [(v.engine, v.voice) for v in voices]
    if len(set(names)) != len(names):
        raise ValueError(f"voices.voices lists a voice twice: {names}")


def held_out_sentences(seed: int, n: int) -> list[str]:
    """`n` distinct sentences of the corpus's generator, drawn from their own seed."""
    rng = np.random.default_rng([seed, SENTENCE_STREAM])
    out: list[str] = []
    for _ in range(MAX_SENTENCE_DRAWS):
        if len(out) == n:
            return out
        text = sentence(rng)
        if text not in out:
            out.append(text)
    raise ValueError(f"could not draw {n} distinct test sentences")


def voice_slug(voice: VoiceParams) -> str:
    """[A-Za-z0-9-] name of a voice for shard keys (keys may hold no dot)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{voice.engine}-{voice.voice}").strip("-")


def framing(seed: int, k: int) -> ep._Shot:
    """Clip k's camera: a wide or close face shot with the corpus's framing ranges (one shot, frame 0 on)."""
    rng = np.random.default_rng([seed, FRAMING_STREAM, k])
    close = bool(rng.random() < CLOSE_SHARE)
    zoom = float(rng.uniform(*(ep.CLOSE_ZOOM if close else ep.WIDE_ZOOM)))
    side = 1 if rng.random() < 0.5 else -1
    u = 0.5 + side * float(rng.uniform(*ep.FRAMING_OFFSET))
    return ep._Shot(0, 0, "face", zoom, u, float(rng.uniform(*ep.VERTICAL_FRAMING)))


def lay_out(utt: Utterance, lead_s: float, tail_s: float, timing: Timing) -> tuple[np.ndarray, list]:
    """Place the speech `lead_s` after the clip start → (pcm (n_frames × spf,), mouth phones on the
    clip's time base, closed at the speech's end as the corpus does at sentence ends)."""
    sr, spf = timing.sample_rate, timing.samples_per_frame
    speech_s = utt.offset_s - utt.onset_s
    n_frames = int(np.ceil((lead_s + speech_s + tail_s) * timing.fps))
    pcm = np.zeros(n_frames * spf, np.float32)
    shift = lead_s - utt.onset_s  # utterance time → clip time
    a = int(round(shift * sr))
    lo, hi = max(a, 0), min(a + len(utt.pcm), len(pcm))
    pcm[lo:hi] = utt.pcm[lo - a: hi - a]
    end = utt.offset_s + shift
    phones = [(max(t + shift, 0.0), p) for t, p in utt.phones if t + shift < end]
    return pcm, phones + [(end, SILENCE)]


def crop_track(boxes: np.ndarray, faces: FacesParams, fps: int) -> np.ndarray:
    """Truth face boxes (T, 4) x, y, w, h → the smoothed crop (T, 3) cx, cy, h, as the faces stage
    builds it from its detections."""
    crop = crop_centre(boxes, faces.face_scale, faces.centre_shift)
    return moving_average(crop, max(1, int(round(faces.smooth_s * fps))))


def render_clip(utt: Utterance, look: Look, shot: ep._Shot, faces: FacesParams, timing: Timing,
                lead_s: float, tail_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """One clip → frames (T, 256, 224, 3) uint8 RGB, audio (T × spf,) float32 (both through the
    episodes' H.264 + AAC path) and its meta: crop_track, truth (mouth_open, face_boxes), phones."""
    fps, sr, spf = timing.fps, timing.sample_rate, timing.samples_per_frame
    pcm, phones = lay_out(utt, lead_s, tail_s, timing)
    n = len(pcm) // spf
    opening, width = pr.mouth_track(phones, n, fps, pr.loudness(pcm, sr))
    scene = ep._cast(look.seed, n, look.config, look.identity, look.look, pcm, opening, width)
    shot = ep._Shot(0, n, "face", shot.zoom, shot.u, shot.v)
    with tempfile.TemporaryDirectory(prefix="nwt-voices-") as tmp:
        wav, mp4 = os.path.join(tmp, "clip.wav"), os.path.join(tmp, "clip.mp4")
        ep._write_wav(wav, pcm, sr)
        boxes = ep._encode(look.episode_id, wav, mp4, look.config, f"nwt.data.voices look={look.episode_id}",
                           [shot], scene, np.random.default_rng(0))
        crop = crop_track(np.array(boxes, np.float64), faces, fps)
        frames = [crop_frame(f, crop[k])[..., ::-1] for k, f in zip(range(n), iter_frames(mp4, fps))]
        audio = read_audio(mp4, sr)[: n * spf]
    if len(frames) != n:
        raise RuntimeError(f"{look.episode_id}: the encoded clip has {len(frames)} frames, expected {n}")
    audio = np.pad(audio, (0, n * spf - len(audio)))
    meta = dict(crop_track=np.round(crop, 2).tolist(), phones=[[round(t, 4), p] for t, p in phones],
                truth=dict(mouth_open=[round(float(v), 4) for v in opening], face_boxes=boxes))
    return np.stack(frames), audio, meta


def clip_record(key: str, voice: VoiceParams, k: int, text: str, look: Look, frames: np.ndarray,
                audio: np.ndarray, meta: dict, timing: Timing) -> dict:
    """The WebDataset sample of one clip: data/shards' meta plus voice, engine, sex, text."""
    n = len(frames)
    words = [w.strip(".,").lower() for w in text.split()]
    full = dict(episode_id=look.episode_id, episode_index=look.episode_index, split=SPLIT, start_s=0.0,
                end_s=n / timing.fps, fps=timing.fps, shot=0, words=words, voice=voice.voice,
                engine=voice.engine, sex=voice.sex, text=text, sentence=k, **meta)
    return clip_sample(key, frames, audio, timing.sample_rate, full)


def read_truth(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def render_voices(looks: list[Look], cfg: VoicesParams, faces: FacesParams, timing: Timing,
                  out_dir: str | Path) -> tuple[list[dict], dict]:
    """Every voice speaks every held-out sentence → `out_dir/unseen-*.tar`.

    Returns ledger rows (item = shard key; a clip whose synthesis or render fails is rejected
    as `failed` and the others go on) and the figures: clips and seconds per voice and engine.
    A missing engine or voice stops before anything is rendered, naming what to apt-get install.
    """
    if not looks:
        raise ValueError("no trained episode look to render the held-out voices in")
    check_unseen(cfg.voices, {lk.voice for lk in looks})
    for v in cfg.voices:
        check_engine(v.engine, v.voice)
    texts = held_out_sentences(cfg.seed, cfg.sentences_per_voice)
    rows, per_voice = [], {}
    with ShardWriter(out_dir, SPLIT, cfg.clips_per_shard) as writer:
        for voice in cfg.voices:
            stats = per_voice.setdefault(voice.voice, dict(engine=voice.engine, sex=voice.sex, clips=0,
                                                           seconds=0.0, render_s=0.0))
            for k, text in enumerate(texts):
                key, look, t0 = f"{voice_slug(voice)}_{k:05d}", looks[k % len(looks)], time.perf_counter()
                try:
                    utt = speak(voice.engine, voice.voice, text, sample_rate=timing.sample_rate, rate=look.look.rate)
                    frames, audio, meta = render_clip(utt, look, framing(cfg.seed, k), faces, timing,
                                                      cfg.lead_s, cfg.tail_s)
                except (RuntimeError, ValueError, OSError) as err:  # this clip only; a missing engine stopped above
                    why = f"{type(err).__name__}: {err}"
                    rows.append(dict(item=key, status="rejected", reason="failed", detail=why))
                    continue
                writer.write(clip_record(key, voice, k, text, look, frames, audio, meta, timing))
                seconds = len(frames) / timing.fps
                stats.update(clips=stats["clips"] + 1, seconds=round(stats["seconds"] + seconds, 2),
                             render_s=round(stats["render_s"] + time.perf_counter() - t0, 2))
                rows.append(dict(item=key, status="kept", detail=f"{voice.engine} {voice.voice}, {look.episode_id}, "
                                 f"{len(frames)} frames"))
    return rows, _figures(per_voice, looks, texts)


def _figures(per_voice: dict, looks: list[Look], texts: list[str]) -> dict:
    engines: dict[str, dict] = {}
    for stats in per_voice.values():
        e = engines.setdefault(stats["engine"], dict(clips=0, seconds=0.0, voices=0))
        e.update(clips=e["clips"] + stats["clips"], seconds=round(e["seconds"] + stats["seconds"], 2),
                 voices=e["voices"] + 1)
    return dict(clips=sum(s["clips"] for s in per_voice.values()),
                seconds=round(sum(s["seconds"] for s in per_voice.values()), 2),
                voices=len(per_voice), engines=len(engines),
                sexes={sex: sum(s["sex"] == sex for s in per_voice.values()) for sex in ("f", "m")},
                sentences=len(texts), looks=sorted({looks[k % len(looks)].episode_id for k in range(len(texts))}),
                per_voice=per_voice, per_engine=engines)
