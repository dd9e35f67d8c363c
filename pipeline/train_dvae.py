"""Stage `train_dvae`: dVAE-Adv with Memcodes on the shards → models/dvae/ (resumable)."""
from __future__ import annotations

import json
from pathlib import Path

from nwt.params import load_params, section
from nwt.stage import DATA, REPORTS, stage
from nwt.train.dvae import train_dvae


def main() -> None:
    params = load_params()
    cfg = dict(section(params, "train_dvae"), media=section(params, "media"))
    episodes = json.loads((DATA / "shards" / "episodes.json").read_text())
    with stage("train_dvae") as metrics:
        result = train_dvae(cfg, DATA / "shards", Path("models/dvae"), REPORTS / "train_dvae",
                            episode_ids=episodes["episode_ids"], unseen_ids=episodes["unseen_episodes"])
        metrics.update(result)


if __name__ == "__main__":
    main()
