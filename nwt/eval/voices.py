"""Lip sync for voices the models never heard (issue 19): the same models generate from three
kinds of audio, each a *condition*, scored alike —

- `own`: the test clips' own audio (the presenter's one training voice);
- `unseen`: the held-out voices of data/voices (other espeak-ng variants, flite, festival),
  whose rendered clips also give a ground truth (`gt_lse_c`);
- `real`: real human speech read from a folder (`evaluate.real_speech_dir`), a test set that
  may be absent: its figures are then None with a `reason`.

Per condition: LSE-C / LSE-D by the stage's sync expert, the judge-free `mouth_audio_corr`, and
the look of every generated frame (nwt.eval.look: distance outside the mouth box to the
requested episode's ground truth; `look_ok_rate` = share under that episode's threshold). The
headline figures are ratios to `own`, so that a weaker voice reads as a number below 1.

    own = Condition()
    for n, clip in enumerate(test_clips):
        scored, frames = generate_scored(gen, clip.audio, clip.meta["episode_id"], sampling, seed + n, scorer,
                                         mouth_box(face_scale, centre_shift), look)
        own.add(scored)
    metrics["voices"] = voice_metrics(own, unseen, real, real_reason=reason)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nwt.constants import Timing
from nwt.data.media import read_audio
from nwt.eval.lipsync import lse_scores
from nwt.eval.metrics import mouth_audio_corr
from nwt.geometry import Box

# what ffmpeg reads that may hold speech; other files in the folder (README, json) are skipped
AUDIO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".m4a", ".aac", ".mp3", ".wav", ".flac", ".ogg")
ROUND = 4


@dataclass
class Scored:
    """One generation's figures (look_* None when the requested episode has no look reference)."""

    lse_c: float
    lse_d: float
    mouth_audio_corr: float
    look_distance: np.ndarray | None = None  # (T,) per generated frame
    look_ok: np.ndarray | None = None  # (T,) bool: under the episode's threshold (see Condition.set_thresholds)
    voice: str = ""
    engine: str = ""
    sex: str = ""
    episode: str | None = None  # the look requested (None: the <unk> look)
    clip: str = ""  # the clip's key, where one clip is generated under several seeds


def score_generation(frames: np.ndarray, audio: np.ndarray, episode_id: str | None, scorer, timing: Timing,
                     mouth: Box, look=None, **labels) -> Scored:
    """LSE, mouth–audio correlation and look of generated frames (T, H, W, 3) uint8 against the
    audio they were generated from (trimmed to the frames). `mouth`: the mouth measures' box
    (nwt.geometry.mouth_box of the faces params); `look`: a calibrated
    nwt.eval.look.LookReference or None; `labels`: voice / engine / sex of the audio."""
    spf = timing.samples_per_frame
    t = min(len(frames), len(audio) // spf)
    frames, audio = frames[:t], audio[: t * spf]
    lse = lse_scores(scorer, frames, audio, timing)
    distance = ok = None
    if look is not None and episode_id in look.features:  # an episode without reference frames has no look
        distance = look.distance(episode_id, frames)
        if episode_id in look.threshold:  # not calibrated yet: Condition.set_thresholds later
            ok = distance <= look.threshold[episode_id]  # as look.ok, without measuring twice
    return Scored(float(lse["lse_c"]), float(lse["lse_d"]), mouth_audio_corr(frames, audio, spf, mouth),
                  distance, ok, episode=episode_id, **labels)


def generate_scored(gen, audio: np.ndarray, episode_id: str | None, sampling, seed: int, scorer, mouth: Box,
                    look=None, **labels) -> tuple[Scored, np.ndarray]:
    """Generate from `audio` with nwt.generate.Generator `gen` under `episode_id` (one the prior
    was not trained on: the `<unk>` look) and score it → (figures, frames (T, H, W, 3) uint8)."""
    requested = episode_id if episode_id in gen.episode_ids else None
    result = gen.from_audio(audio, requested, sampling=sampling, seed=seed)
    return score_generation(result.frames, audio, requested, scorer, gen.timing, mouth, look, **labels), result.frames


@dataclass
class Condition:
    """The scored generations of one audio condition."""

    items: list[Scored] = field(default_factory=list)

    def add(self, scored: Scored) -> None:
        self.items.append(scored)

    def __len__(self) -> int:
        return len(self.items)

    def figures(self) -> dict:
        """Means over generations (LSE, correlation) and over generated frames (look)."""
        return _figures(self.items)

    def set_thresholds(self, look) -> None:
        """Judge the generations' look distances by `look`'s thresholds, for generations scored
        before it was calibrated."""
        for s in self.items:
            if s.look_distance is not None and s.episode in look.threshold:
                s.look_ok = s.look_distance <= look.threshold[s.episode]

    def first_frames_ok(self) -> list[bool]:
        """Frame 0 of each generation under its episode's look threshold (generations with a look)."""
        return [bool(s.look_ok[0]) for s in self.items if s.look_ok is not None and len(s.look_ok)]

    def per_voice(self) -> dict[str, dict]:
        """voice → its figures, engine and sex (voices in first-seen order)."""
        out: dict[str, dict] = {}
        for voice in dict.fromkeys(s.voice for s in self.items):
            items = [s for s in self.items if s.voice == voice]
            out[voice] = dict(_figures(items), engine=items[0].engine, sex=items[0].sex)
        return out


def _figures(items: list[Scored]) -> dict:
    if not items:
        raise ValueError("no generations to summarise")
    looks = [s for s in items if s.look_ok is not None]
    keyed = all(s.clip for s in items)  # clips under several seeds: count each clip once
    out = dict(lse_c=_mean(s.lse_c for s in items), lse_d=_mean(s.lse_d for s in items),
               mouth_audio_corr=_mean(s.mouth_audio_corr for s in items),
               clips=len({s.clip for s in items}) if keyed else len(items), generations=len(items))
    if looks:
        out["look_ok_rate"] = round(float(np.concatenate([s.look_ok for s in looks]).mean()), ROUND)
        out["look_distance"] = round(float(np.concatenate([s.look_distance for s in looks]).mean()), ROUND)
    else:
        out["look_ok_rate"] = out["look_distance"] = None
    return out


def _mean(values: Iterable[float]) -> float:
    return round(float(np.mean(list(values))), ROUND)


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference; None when either is missing or the reference is ≈ 0."""
    if value is None or reference is None or abs(reference) < 1e-6:
        return None
    return round(value / reference, ROUND)


def voice_metrics(own: Condition, unseen: Condition | None, real: Condition | None,
                  unseen_reason: str = "", real_reason: str = "", unseen_gt_lse_c: float | None = None) -> dict:
    """The `voices` block of evaluate's metrics: own / unseen / real figures and their ratios to
    own. A missing condition (None or empty) gets null figures and its `reason`."""
    base = own.figures()
    out = {"own": {k: base[k] for k in ("lse_c", "lse_d", "mouth_audio_corr", "look_ok_rate", "look_distance",
                                        "clips")}}
    for name, cond, reason in (("unseen", unseen, unseen_reason), ("real", real, real_reason)):
        if cond is None or not len(cond):
            out[name] = dict.fromkeys(("lse_c", "lse_d", "mouth_audio_corr", "look_ok_rate", "look_distance",
                                       "lse_c_ratio_to_own", "mouth_audio_corr_ratio_to_own"))
            out[name].update(clips=0, reason=reason or f"no {name} clips")
            continue
        figures = cond.figures()
        out[name] = dict(figures, lse_c_ratio_to_own=ratio(figures["lse_c"], base["lse_c"]),
                         mouth_audio_corr_ratio_to_own=ratio(figures["mouth_audio_corr"], base["mouth_audio_corr"]))
    if unseen is not None and len(unseen):
        voices = unseen.per_voice()
        for figures in voices.values():
            figures["lse_c_ratio_to_own"] = ratio(figures["lse_c"], base["lse_c"])
        out["unseen"].update(
            voices=len(voices), engines=len({s.engine for s in unseen.items}),
            lse_c_ratio_to_own_min=min(v["lse_c_ratio_to_own"] for v in voices.values()),
            gt_lse_c=unseen_gt_lse_c, per_voice=voices)
    else:
        out["unseen"].update(voices=0, engines=0, lse_c_ratio_to_own_min=None, gt_lse_c=None)
    return out


def seed_spread(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Figures measured once per sampling seed → each one's mean and, as `<key>_sd`, its sample
    standard deviation over the seeds (ddof 1: an estimate of what another run's seeds would
    give; 0 with one seed)."""
    if not per_seed:
        raise ValueError("no seeds to summarise")
    out: dict[str, float] = {}
    for key in per_seed[0]:
        values = np.array([figures[key] for figures in per_seed], np.float64)
        out[key] = round(float(values.mean()), ROUND)
        out[f"{key}_sd"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, ROUND)
    return out


def real_speech_files(folder: str | Path) -> tuple[list[Path], str]:
    """The audio/video files of `folder` (sorted), or [] and why there are none."""
    if not str(folder).strip():  # before Path(""), which is "."
        return [], "evaluate.real_speech_dir is empty"
    folder = Path(folder)
    if not folder.is_dir():
        return [], f"no real-speech folder at {folder} (evaluate.real_speech_dir)"
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        return [], f"{folder} holds no audio or video files ({', '.join(AUDIO_SUFFIXES)})"
    return files, ""


def load_real_speech(folder: str | Path, sample_rate: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """[(file stem, mono float32 audio at `sample_rate`)] of every file in `folder` (ffmpeg
    resamples and downmixes, e.g. AAC 44.1 kHz stereo), or [] and the reason there are none.
    Held in memory only: nothing read here is written anywhere by this module."""
    files, reason = real_speech_files(folder)
    return [(p.stem, np.asarray(read_audio(p, sample_rate), np.float32)) for p in files], reason
