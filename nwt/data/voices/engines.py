"""Speech in voices the presenter never had: espeak-ng variants, flite and festival, each with the
phone times of that very audio, mapped onto the espeak mnemonics that drive the presenter's mouth.

Why the engines' own phone times and not a forced aligner: every engine here builds its waveform
from a segment list it already timed (espeak's phoneme events, flite's `-psdur`, festival's
Segment relation), so those times are exact where an aligner would add its own error. flite and
festival speak the CMU/radio phone set; `CMU_TO_ESPEAK` maps it onto the mnemonics that
`nwt.data.synthetic.presenter.viseme` knows.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from nwt.data.synthetic.speech import speech_extent, synth

ENGINES = ("espeak", "flite", "festival")
SEXES = ("f", "m")
# engine → (binary that must be on the PATH, what to apt-get install for it)
BINARIES = {"espeak": ("espeak-ng", "espeak-ng"), "flite": ("flite", "flite"), "festival": ("festival", "festival")}
# festival voice → the Debian package that holds it (the error names it when the voice is missing)
FESTIVAL_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
SILENCE = "_"
# CMU / festival radio phone set → espeak-ng mnemonic (same mouth shape); pauses → "_"
CMU_TO_ESPEAK = {
    "pau": SILENCE, "h#": SILENCE, "sil": SILENCE, "brth": SILENCE,
    "aa": "A:", "ae": "a", "ah": "V", "ao": "O:", "aw": "aU", "ax": "@", "axr": "3", "ay": "aI",
    "b": "b", "ch": "tS", "d": "d", "dh": "D", "dx": "t", "eh": "E", "el": "@L", "em": "m", "en": "n",
    "er": "3:", "ey": "eI", "f": "f", "g": "g", "hh": "h", "ih": "I", "ix": "I", "iy": "i:", "jh": "dZ",
    "k": "k", "l": "l", "m": "m", "n": "n", "ng": "N", "nx": "n", "ow": "oU", "oy": "OI", "p": "p",
    "r": "r", "s": "s", "sh": "S", "t": "t", "th": "T", "uh": "U", "uw": "u:", "v": "v", "w": "w",
    "y": "j", "z": "z", "zh": "Z",
}
TIMEOUT_S = 60


@dataclass(frozen=True)
class Utterance:
    """One spoken sentence.

    pcm: float32 mono in [-1, 1] at `sample_rate`. phones: (start_s, espeak mnemonic) in order,
    times in `pcm`'s time base. onset_s / offset_s: the speech extent by energy (-40 dBFS).
    """

    pcm: np.ndarray
    phones: list[tuple[float, str]]
    sample_rate: int
    onset_s: float
    offset_s: float


def check_engine(engine: str, voice: str) -> None:
    """Raise a RuntimeError saying what to apt-get install when `engine` (or its voice) is missing."""
    if engine not in ENGINES:
        raise ValueError(f"unknown speech engine {engine!r}; one of {', '.join(ENGINES)}")
    binary, package = BINARIES[engine]
    if shutil.which(binary) is None:
        raise RuntimeError(f"speech engine {engine} is missing ({binary} not on the PATH): apt-get install {package}")
    if engine == "festival" and voice not in festival_voices():
        need = FESTIVAL_PACKAGES.get(voice, "the festvox package of that voice")
        raise RuntimeError(f"festival has no voice {voice!r} (it has {', '.join(festival_voices()) or 'none'}): "
                           f"apt-get install {need}")
    if engine == "flite":
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=TIMEOUT_S).stdout
        if voice not in listed.split():
            raise RuntimeError(f"flite has no voice {voice!r} ({listed.strip()}): apt-get install flite")


def festival_voices() -> list[str]:
    out = subprocess.run(["festival", "-b", "(print (voice.list))"], capture_output=True, text=True,
                         timeout=TIMEOUT_S).stdout
    return out.strip().strip("()").split()


def speak(engine: str, voice: str, text: str, *, sample_rate: int, rate: int) -> Utterance:
    """`text` in `voice` of `engine`, resampled to `sample_rate`; `rate` (words/min) is used by espeak
    only (flite and festival keep their voice's own tempo)."""
    if engine == "espeak":
        s = synth(text, voice, rate, 50, sample_rate=sample_rate)
        return Utterance(s.pcm, list(s.phonemes), sample_rate, s.onset_s, s.offset_s)
    if engine not in ENGINES:
        raise ValueError(f"unknown speech engine {engine!r}; one of {', '.join(ENGINES)}")
    with tempfile.TemporaryDirectory(prefix="nwt-voice-") as tmp:
        wav = os.path.join(tmp, "speech.wav")
        ends = _flite(voice, text, wav) if engine == "flite" else _festival(voice, text, wav)
        pcm, native = sf.read(wav, dtype="float32")
    if pcm.ndim > 1:
        pcm = pcm.mean(axis=1)
    if native != sample_rate and len(pcm):
        g = gcd(sample_rate, native)
        pcm = resample_poly(pcm, sample_rate // g, native // g).astype(np.float32)
    phones = [(start, CMU_TO_ESPEAK.get(name, name)) for start, name in _starts(ends)]
    onset, offset = speech_extent(pcm, sample_rate)
    return Utterance(pcm, phones, sample_rate, onset, offset)


def _starts(ends: list[tuple[str, float]]) -> list[tuple[float, str]]:
    """(phone, end_s) segments → (start_s, phone): each starts where the previous one ended."""
    out, t = [], 0.0
    for name, end in ends:
        out.append((t, name))
        t = end
    return out


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _flite(voice: str, text: str, wav: str) -> list[tuple[str, float]]:
    """flite → `wav`; its -psdur line `pau:0.184 dh:0.228 …` holds each segment's end time."""
    out = _run(["flite", "-voice", voice, "-psdur", "-t", text, "-o", wav], f"flite -voice {voice}")
    segs = [tok.rsplit(":", 1) for tok in out.split() if ":" in tok]
    if not segs:
        raise RuntimeError(f"flite -voice {voice} printed no segments for {text!r}")
    return [(name, float(end)) for name, end in segs]


FESTIVAL_SCRIPT = """({voice_fn})
(set! utt (Utterance Text "{text}"))
(utt.synth utt)
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "SEG %s %f\\n" (item.name s) (item.feat s "end"))) (utt.relation.items utt 'Segment))
"""


def _festival(voice: str, text: str, wav: str) -> list[tuple[str, float]]:
    """festival in batch mode → `wav`; the Segment relation's end times, printed by the script."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    script = FESTIVAL_SCRIPT.format(voice_fn=f"voice_{voice}", text=quoted, wav=wav)
    path = wav + ".scm"
    with open(path, "w") as fh:
        fh.write(script)
    out = _run(["festival", "-b", path], f"festival voice_{voice}")
    segs = [line.split()[1:] for line in out.splitlines() if line.startswith("SEG ")]
    if not segs or not os.path.exists(wav):
        raise RuntimeError(f"festival voice_{voice} gave no speech for {text!r}: {out.strip()[-200:]}")
    return [(name, float(end)) for name, end in segs]
