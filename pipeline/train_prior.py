"""Stage `train_prior`: the audio-conditioned prior on memcode tokens → models/prior/ (resumable)."""
from __future__ import annotations

import json
from pathlib import Path

from nwt.params import load_params
from nwt.stage import DATA, REPORTS, stage
from nwt.train.prior import train_prior


def main() -> None:
    params = load_params()
    episodes = json.loads((DATA / "shards" / "episodes.json").read_text())
    with stage("train_prior") as metrics:
        result = train_prior(params.prior, params.media.timing, DATA / "tokens", Path("models/prior"),
                             REPORTS / "train_prior", episode_ids=episodes["episode_ids"])
        metrics.update(result)


if __name__ == "__main__":
    main()
