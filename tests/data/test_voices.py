"""The voices stage's held-out voices (issue 19), checked on real renders of short clips.

What evaluation relies on: each engine speaks with phone times that drive the presenter's mouth,
so the rendered mouth follows that very audio; the clips are data/shards-format samples of the
`unseen` split with voice, engine, sex and text in their meta; the same params give the same
bytes; no held-out voice is one the presenter speaks in training, and no training stage reads
data/voices; a missing engine says what to apt-get install.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import synthetic_config
from repo_params import PARAMS, TIMING

from nwt.data.shards import iter_clips, shard_paths
from nwt.data.synthetic import presenter as pr
from nwt.data.voices import engines
from nwt.data.voices.engines import CMU_TO_ESPEAK, check_engine, speak
from nwt.data.voices.render import (
    SPLIT,
    Look,
    check_unseen,
    episode_look,
    framing,
    held_out_sentences,
    lay_out,
    render_clip,
    render_voices,
)
from nwt.eval.metrics import mouth_audio_corr
from nwt.geometry import mouth_box
from nwt.params import VoiceParams, with_changes

REPO = Path(__file__).resolve().parents[2]
TEXT = "Here is more about the quiet market and the golden bridge."
# one voice per engine, each with the binary that must be present
ENGINE_VOICES = [("espeak", "en-us+f4", "espeak-ng"), ("flite", "slt", "flite"),
                 ("festival", "kal_diphone", "festival")]
MIN_MOUTH_AUDIO_CORR = 0.5  # rendered mouth darkness vs log loudness; own-voice test clips give 0.63–0.85
MIN_TRUTH_CORR = 0.6  # the truth opening vs log loudness per frame
MIN_NAMED_SHARE = 0.9  # phones with a mouth shape of their own (not the neutral fallback)
MIN_PHONES = 20  # the sentence has ~45 phones; far fewer means the phone times were lost


def _look(seed: int = 0) -> Look:
    """A trained-episode look as the stage rebuilds it from a truth JSON (identity 0, the presenter)."""
    config = synthetic_config()
    look = pr.random_look(np.random.default_rng([seed, 1]), pr.IDENTITIES[0])
    truth = dict(episode_id="synth-000", seed=seed, identity=0, look=look.to_json(), config=dataclasses.asdict(config))
    return episode_look(truth, 0, TIMING)


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (apt-get install {binary}): its voices cannot be rendered")


@pytest.mark.parametrize("engine,voice,binary", ENGINE_VOICES)
def test_each_engine_drives_the_mouth_with_its_own_audio(engine, voice, binary):
    _require(binary)
    check_engine(engine, voice)
    utt = speak(engine, voice, TEXT, sample_rate=TIMING.sample_rate, rate=160)
    assert len(utt.phones) >= MIN_PHONES and 0 <= utt.onset_s < utt.offset_s <= len(utt.pcm) / TIMING.sample_rate
    # espeak's own rare mnemonics (o@, i@3) fall back by prefix as in the training corpus
    named = [pr.viseme(p) != pr.DEFAULT_VISEME for _, p in utt.phones]
    assert np.mean(named) > MIN_NAMED_SHARE, [p for _, p in utt.phones if pr.viseme(p) == pr.DEFAULT_VISEME]
    assert [t for t, _ in utt.phones] == sorted(t for t, _ in utt.phones)

    frames, audio, meta = render_clip(utt, _look(), framing(0, 0), PARAMS.faces, TIMING, 0.3, 0.3)
    n, spf = len(frames), TIMING.samples_per_frame
    assert frames.shape == (n, 256, 224, 3) and frames.dtype == np.uint8 and audio.shape == (n * spf,)
    assert len(meta["truth"]["mouth_open"]) == len(meta["crop_track"]) == n
    box = mouth_box(PARAMS.faces.face_scale, PARAMS.faces.centre_shift)
    assert mouth_audio_corr(frames, audio, spf, box) > MIN_MOUTH_AUDIO_CORR
    rms = np.sqrt(np.mean(audio.reshape(n, spf) ** 2, axis=1))
    assert np.corrcoef(meta["truth"]["mouth_open"], np.log10(rms + 1e-4))[0, 1] > MIN_TRUTH_CORR


def test_cmu_phones_map_onto_mouth_shapes():
    """flite's and festival's phone set lands on named visemes, never on the neutral fallback."""
    assert all(v in pr.VISEMES for v in CMU_TO_ESPEAK.values())


def test_lay_out_places_speech_after_the_lead_and_closes_the_mouth_at_its_end():
    speech = np.where(np.arange(16000) >= 1600, 0.1, 0.0).astype(np.float32)  # silent before its onset 0.1 s
    utt = engines.Utterance(speech, [(0.1, "a"), (0.5, "m")], 16000, 0.1, 0.9)
    pcm, phones = lay_out(utt, 0.3, 0.3, TIMING)
    assert len(pcm) % TIMING.samples_per_frame == 0 and len(pcm) == 35 * 640  # 1.4 s
    assert phones == [(0.3, "a"), (0.7, "m"), (pytest.approx(1.1), "_")]
    assert np.all(pcm[: int(0.29 * 16000)] == 0)


def test_stage_writes_parsable_deterministic_unseen_shards(tmp_path):
    _require("espeak-ng")
    _require("flite")
    cfg = with_changes(PARAMS.voices, sentences_per_voice=1, voices=(
        VoiceParams(engine="espeak", voice="en+m3", sex="m"), VoiceParams(engine="flite", voice="slt", sex="f")))
    looks = [_look(0), _look(1)]
    rows, figures = render_voices(looks, cfg, PARAMS.faces, TIMING, tmp_path / "a")
    assert [r["status"] for r in rows] == ["kept", "kept"]
    assert figures["clips"] == 2 and figures["voices"] == 2 and figures["engines"] == 2
    assert figures["sexes"] == {"f": 1, "m": 1} and figures["seconds"] > 2

    clips = list(iter_clips(shard_paths(tmp_path / "a", SPLIT)))
    assert [c.meta["voice"] for c in clips] == ["en+m3", "slt"]
    text = held_out_sentences(cfg.seed, 1)[0]
    for c in clips:
        m = c.meta
        assert m["split"] == "unseen" and m["text"] == text and m["episode_id"] == "synth-000"
        assert {"episode_index", "start_s", "end_s", "fps", "words", "crop_track", "truth", "engine", "sex"} <= set(m)
        assert c.frames.shape == (m["n_frames"], 256, 224, 3)
        assert len(c.audio) == m["n_frames"] * TIMING.samples_per_frame

    render_voices(looks, cfg, PARAMS.faces, TIMING, tmp_path / "b")
    a, b = shard_paths(tmp_path / "a", SPLIT), shard_paths(tmp_path / "b", SPLIT)
    assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]


def test_default_voices_are_unseen_varied_and_never_read_by_training():
    cfg = PARAMS.voices
    assert len(cfg.voices) >= 4 and {v.sex for v in cfg.voices} == {"f", "m"}
    assert len({v.engine for v in cfg.voices}) >= 2
    # the corpus speaks only espeak-ng voices: its identities' variants of the config's voice
    training = {synthetic_config().voice + pr.IDENTITIES[i].voice_variant
                for i in range(PARAMS.download.synthetic.identities)}
    check_unseen(cfg.voices, training)
    with pytest.raises(ValueError, match="a held-out voice must be unseen"):
        check_unseen((VoiceParams(engine="espeak", voice="en-us", sex="m"),), training)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    readers = [name for name, s in stages.items() if any(str(d).startswith("data/voices") for d in s.get("deps", []))]
    assert not [r for r in readers if r.startswith("train") or r == "tokenize"], readers


def test_a_missing_engine_says_what_to_install(monkeypatch):
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install flite"):
        check_engine("flite", "slt")
    with pytest.raises(RuntimeError, match="apt-get install festival"):
        check_engine("festival", "kal_diphone")


def test_a_missing_festival_voice_names_its_package():
    _require("festival")
    with pytest.raises(RuntimeError, match="festival has no voice .no_such_voice.*apt-get install"):
        check_engine("festival", "no_such_voice")
