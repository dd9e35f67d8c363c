"""The real-vs-own contact sheet (nwt/eval/sheet.py) and evaluate's handling of an absent real
speech folder: no figures, a reason, and a sheet whose real half says why."""
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from presenter_data import evaluate_params, presenter_clip

from nwt.constants import Timing
from nwt.eval.sheet import EMPTY, GAP, TITLE_H, contact_sheet, pick_frames, write_png

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frames():
    return presenter_clip(np.random.default_rng(1), 12)[0]  # (12, 256, 224, 3)


def test_pick_frames_takes_first_middle_last(frames):
    picked = pick_frames(frames, 3)
    assert np.array_equal(picked, frames[[0, 6, 11]])
    assert len(pick_frames(frames[:2], 3)) == 2
    with pytest.raises(ValueError):
        pick_frames(frames[:0], 3)


def test_sheet_puts_both_sides_at_half_size(frames, tmp_path):
    left, right = [frames[:3], frames[3:6]], [frames[6:9], frames[9:12]]
    sheet = contact_sheet(left, right, ("real", "own"))
    assert sheet.shape == (TITLE_H + 2 * 128, 2 * 3 * 112 + GAP, 3)
    first = cv2.resize(frames[0], (112, 128), interpolation=cv2.INTER_AREA)
    assert np.array_equal(sheet[TITLE_H : TITLE_H + 128, :112], first)
    last = cv2.resize(frames[11], (112, 128), interpolation=cv2.INTER_AREA)
    assert np.array_equal(sheet[TITLE_H + 128 :, -112:], last)
    path = tmp_path / "contact_sheet_real_vs_own.png"
    write_png(path, sheet)
    assert np.array_equal(cv2.imread(str(path))[..., ::-1], sheet)  # lossless, RGB kept


def test_an_empty_side_is_grey_with_its_reason(frames):
    sheet = contact_sheet([], [frames[:3]], ("real", "own"), notes=("no real speech: absent", ""))
    left = sheet[TITLE_H:, : 3 * 112]
    assert np.median(left) == EMPTY and (left > 200).any()  # grey, with the reason written in white
    with pytest.raises(ValueError, match="at least one side"):
        contact_sheet([], [], ("real", "own"))


def _evaluate_module():
    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO / "pipeline" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_evaluate_without_real_speech_gives_null_figures_and_a_sheet(frames, tmp_path, monkeypatch):
    stage = _evaluate_module()
    cfg = evaluate_params(real_speech_dir=str(tmp_path / "no_such_folder"))
    gen = SimpleNamespace(timing=Timing(25, 16000))  # nothing to generate: no models needed
    real, reason, rows = stage.real_speech(gen, cfg, None, [None])
    assert len(real) == 0 and rows == [] and "no real-speech folder" in reason
    monkeypatch.setattr(stage, "SHEET", tmp_path / "contact_sheet_real_vs_own.png")
    stage.write_sheet(rows, {"synth-000": pick_frames(frames, 3)}, reason)
    sheet = cv2.imread(str(tmp_path / "contact_sheet_real_vs_own.png"))
    assert sheet.shape == (TITLE_H + 128, 2 * 3 * 112 + GAP, 3)
    assert np.median(sheet[TITLE_H:, : 3 * 112]) == EMPTY
