"""Stage `voices`: the presenter speaking held-out test sentences in voices never heard in training
→ data/voices/unseen-*.tar (test only: no training stage reads data/voices), its ledger and figures."""
from __future__ import annotations

import json
import shutil

import pandas as pd

from nwt.data.ledger import Ledger
from nwt.data.voices.render import episode_look, read_truth, render_voices
from nwt.params import load_params
from nwt.stage import DATA, stage, write_ledger

VOICES = DATA / "voices"


def main() -> None:
    p = load_params()
    with stage("voices") as metrics:
        if VOICES.exists():
            shutil.rmtree(VOICES)
        VOICES.mkdir(parents=True)
        episodes = pd.read_parquet(DATA / "download" / "episodes.parquet")
        held_out = set(json.loads((DATA / "shards" / "episodes.json").read_text())["unseen_episodes"])
        truths = episodes.truth if "truth" in episodes else pd.Series([None] * len(episodes))
        # the looks of the trained episodes: the clips' gt is then a look the models know by id
        looks = [episode_look(read_truth(truth), int(ep.episode_index), p.media.timing)
                 for ep, truth in zip(episodes.itertuples(), truths)
                 if ep.episode_id not in held_out and isinstance(truth, str) and truth]
        ledger = Ledger("voices")
        if looks:
            rows, figures = render_voices(looks, p.voices, p.faces, p.media.timing, VOICES)
            ledger.extend(rows)
            metrics.update(figures)
        else:  # real footage: no rendered presenter to put a held-out voice in
            metrics.update(clips=0, seconds=0.0, voices=0, engines=0,
                           reason="no trained synthetic episode with a truth JSON (download.source is not synthetic)")
        write_ledger(ledger)


if __name__ == "__main__":
    main()
