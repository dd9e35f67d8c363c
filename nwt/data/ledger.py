"""Per-stage ledger: every input item ends kept, or rejected with a reason from a fixed list.

`data/<stage>/ledger.parquet` has one row per item: item, status (kept|rejected), reason,
detail. `kept + rejected == seen` is what lets a run prove nothing was silently lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nwt.atomic import write_parquet

KEPT, REJECTED = "kept", "rejected"

# The fixed list of reasons. Adding one is a code change on purpose: reports group by it.
REASONS = {
    "ok": "kept",
    "download_failed": "the source could not be fetched (unreachable URL, missing path)",
    "bad_id": "episode id is not [A-Za-z0-9_-]+",
    "corrupt": "the file cannot be decoded as video",
    "no_video": "the file has no video stream",
    "no_audio": "the file has no audio stream",
    "too_short": "shorter than the stage's minimum length",
    "no_face": "no face found in the shot",
    "multiple_faces": "several comparable faces in the shot",
    "face_too_small": "the face is smaller than the minimum size",
    "too_much_motion": "the face moves too much within the shot",
    "silence": "no speech found",
    "split_gap": "clip left out between split blocks so neighbouring frames do not leak",
    "failed": "the stage raised an error on this item (detail has the message)",
}


@dataclass
class Ledger:
    stage: str
    rows: list[dict] = field(default_factory=list)

    def keep(self, item: str, detail: str = "") -> None:
        self.rows.append(dict(item=item, status=KEPT, reason="ok", detail=detail))

    def reject(self, item: str, reason: str, detail: str = "") -> None:
        if reason not in REASONS or reason == "ok":
            raise ValueError(f"unknown rejection reason {reason!r}; add it to nwt.data.ledger.REASONS")
        self.rows.append(dict(item=item, status=REJECTED, reason=reason, detail=detail))

    def extend(self, rows: list[dict]) -> None:
        for row in rows:
            if row["status"] == KEPT:
                self.keep(row["item"], row.get("detail", ""))
            else:
                self.reject(row["item"], row["reason"], row.get("detail", ""))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["item", "status", "reason", "detail"])

    @property
    def kept(self) -> int:
        return sum(r["status"] == KEPT for r in self.rows)

    @property
    def rejected(self) -> int:
        return sum(r["status"] == REJECTED for r in self.rows)

    def write(self, path: str | Path) -> None:
        items = [r["item"] for r in self.rows]
        if len(items) != len(set(items)):
            dup = sorted({i for i in items if items.count(i) > 1})[:5]
            raise RuntimeError(f"{self.stage} ledger lists items twice: {dup}")
        write_parquet(path, self.frame())

    def summary(self) -> str:
        reasons = pd.Series([r["reason"] for r in self.rows if r["status"] == REJECTED]).value_counts()
        why = ", ".join(f"{k} {v}" for k, v in reasons.items()) or "none"
        return f"{self.stage}: {len(self.rows)} seen, {self.kept} kept, {self.rejected} rejected ({why})"


def read_ledger(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)
