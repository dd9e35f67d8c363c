"""Stage `shots`: PySceneDetect per episode → data/shots/shots.parquet (+ ledger, cut scores)."""
from __future__ import annotations

import pandas as pd

from nwt.atomic import write_parquet
from nwt.data.ledger import Ledger
from nwt.data.media import MediaError
from nwt.data.parallel import run_tasks, shutdown
from nwt.data.shots import episode_shots
from nwt.params import load_params
from nwt.stage import DATA, stage, write_ledger


def main() -> None:
    p = load_params()
    cfg, fps = p.shots, p.media.timing.fps
    with stage("shots") as metrics:
        episodes = pd.read_parquet(DATA / "download" / "episodes.parquet").to_dict("records")
        results = run_tasks(episode_shots, episodes, "detect shots", cfg=cfg, fps=fps)
        shutdown()
        ledger, rows = Ledger("shots"), []
        matched = n_det = n_truth = 0
        for episode, res in results:
            if isinstance(res, Exception):
                reason = res.reason if isinstance(res, MediaError) else "failed"
                ledger.reject(episode["episode_id"], reason, f"{type(res).__name__}: {res}")
                continue
            ledger.keep(episode["episode_id"], f"{len(res['shots'])} shots")
            for i, (start, end) in enumerate(res["shots"]):
                rows.append(dict(episode_id=episode["episode_id"], shot=i, start_frame=start, end_frame=end))
            if res["score"]:
                matched, n_det, n_truth = (a + b for a, b in zip((matched, n_det, n_truth), res["score"]))
        write_parquet(DATA / "shots" / "shots.parquet",
                      pd.DataFrame(rows, columns=["episode_id", "shot", "start_frame", "end_frame"]))
        write_ledger(ledger)
        metrics.update(episodes=ledger.kept, episodes_rejected=ledger.rejected, shots=len(rows))
        if n_truth:
            metrics.update(cut_recall=round(matched / n_truth, 4), cut_precision=round(matched / max(n_det, 1), 4))


if __name__ == "__main__":
    main()
