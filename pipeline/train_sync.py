"""Stage `train_sync`: the SyncNet-style sync expert on the train shards → models/sync/ (resumable).

Writes models/sync/sync.pt (+ last.pt for resuming) and reports/train_sync/metrics.json
(`val.accuracy`, `val.offset_recovery_rate`, …); evaluate scores LSE-D / LSE-C with it.
"""
from __future__ import annotations

from pathlib import Path

from nwt.params import load_params
from nwt.stage import DATA, REPORTS, stage
from nwt.train.sync import train_sync


def main() -> None:
    params = load_params()
    with stage("train_sync") as metrics:
        result = train_sync(params.train_sync, params.media.timing, DATA / "shards", Path("models/sync"),
                            REPORTS / "train_sync", faces=params.faces)
        metrics.update(result)


if __name__ == "__main__":
    main()
