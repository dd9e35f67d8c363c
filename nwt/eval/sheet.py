"""A two-panel contact sheet of generated frames: rows of frames from one audio condition beside
rows from another (evaluate's real speech | the presenter's own voice), frames only — no audio
is ever written with it. A panel with nothing to show is drawn grey with the reason in it, so
the sheet (a declared DVC output) exists whether or not the condition could be run.

    sheet = contact_sheet([pick_frames(gen_real, 3), ...], [pick_frames(gen_own, 3), ...],
                          ("generated from real speech", "generated from the presenter's voice"))
    write_png("reports/evaluate/contact_sheet_real_vs_own.png", sheet)
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np

from nwt.atomic import atomic_path

TITLE_H = 22  # pixels of the title band above each panel
GAP = 8  # pixels between the two panels
BACKGROUND = 255  # white around the frames
EMPTY = 96  # grey of a panel with no frames


def pick_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """`n` evenly spaced frames of (T, H, W, 3), the first and the last included (fewer if T < n)."""
    if len(frames) == 0:
        raise ValueError("no frames to pick from")
    idx = np.unique(np.linspace(0, len(frames) - 1, n).round().astype(int))
    return frames[idx]


def _panel(rows: list[np.ndarray], n_rows: int, per_row: int, frame_hw: tuple[int, int], title: str,
           note: str) -> np.ndarray:
    """rows of (≤ per_row, h, w, 3) frames → (TITLE_H + n_rows·h, per_row·w, 3); no rows → grey with `note`."""
    fh, fw = frame_hw
    panel = np.full((TITLE_H + n_rows * fh, per_row * fw, 3), BACKGROUND, np.uint8)
    body = panel[TITLE_H:]
    for r, frames in enumerate(rows[:n_rows]):
        for c, frame in enumerate(frames[:per_row]):
            body[r * fh : (r + 1) * fh, c * fw : (c + 1) * fw] = frame
    if not rows:
        body[:] = EMPTY
        for i, line in enumerate(textwrap.wrap(note, max(10, panel.shape[1] // 7))):
            cv2.putText(panel, line, (6, TITLE_H + 20 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
    cv2.putText(panel, title, (4, TITLE_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def contact_sheet(left: list[np.ndarray], right: list[np.ndarray], titles: tuple[str, str],
                  notes: tuple[str, str] = ("", ""), scale: float = 0.5) -> np.ndarray:
    """Two panels side by side, each a row per list entry ((k, H, W, 3) uint8 RGB frames, shown at
    `scale`). An empty side is grey with its note (why there is nothing); both empty is an error.
    → (H', W', 3) uint8 RGB."""
    sides = [left, right]
    shapes = [rows[0].shape[1:3] for rows in sides if rows]
    if not shapes:
        raise ValueError("a contact sheet needs frames on at least one side")
    h, w = shapes[0]
    fh, fw = max(1, round(h * scale)), max(1, round(w * scale))
    small = [[np.stack([cv2.resize(f, (fw, fh), interpolation=cv2.INTER_AREA) for f in frames])
              for frames in rows] for rows in sides]
    n_rows = max(len(rows) for rows in small)
    per_row = max(len(frames) for rows in small for frames in rows)
    panels = [_panel(rows, n_rows, per_row, (fh, fw), title, note)
              for rows, title, note in zip(small, titles, notes)]
    gap = np.full((panels[0].shape[0], GAP, 3), BACKGROUND, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """An (H, W, 3) uint8 RGB image as a PNG, written atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"could not write {path}")
