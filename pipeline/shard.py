"""Stage `shard`: clips → cropped 256×224 video + audio in WebDataset shards, split by clip."""
from __future__ import annotations

import shutil

import pandas as pd

from nwt.atomic import write_json
from nwt.data.ledger import Ledger
from nwt.data.media import MediaError
from nwt.data.parallel import run_tasks, shutdown
from nwt.data.shard import episode_shards
from nwt.data.split import GAP, MIN_CLIPS_FOR_HOLDOUT, assign_splits, unseen_episode_ids
from nwt.params import load_params
from nwt.stage import DATA, log, stage, write_ledger

SHARDS = DATA / "shards"


def main() -> None:
    p = load_params()
    cfg, t = p.shard, p.media.timing
    with stage("shard") as metrics:
        if SHARDS.exists():
            shutil.rmtree(SHARDS)
        SHARDS.mkdir(parents=True)
        episodes = pd.read_parquet(DATA / "download" / "episodes.parquet")
        clips = pd.read_parquet(DATA / "segment" / "clips.parquet")
        tracks = pd.read_parquet(DATA / "faces" / "tracks.parquet").set_index(["episode_id", "shot"])
        with_clips = [e for e in episodes.episode_id if (clips.episode_id == e).any()]
        if not with_clips:
            raise RuntimeError("no clips to shard: the segment stage kept none (see data/segment/ledger.parquet). "
                               "Training needs at least one clip of speech in a face shot (segment.min_clip_s or "
                               f"longer); val and test blocks need {MIN_CLIPS_FOR_HOLDOUT} clips in an episode, an "
                               "unseen split a second episode")
        unseen = set(unseen_episode_ids(with_clips, cfg.unseen_episodes))
        ledger, jobs = Ledger("shard"), []
        for ep in episodes.itertuples():
            ep_clips = clips[clips.episode_id == ep.episode_id].sort_values("start_s").to_dict("records")
            if not ep_clips:
                continue
            labels = (["unseen"] * len(ep_clips) if ep.episode_id in unseen
                      else assign_splits(len(ep_clips), cfg.val_fraction, cfg.test_fraction))
            job_clips = []
            for c, label in zip(ep_clips, labels):
                if label == GAP:
                    ledger.reject(c["key"], "split_gap", "between split blocks")
                    continue
                tr = tracks.loc[(c["episode_id"], c["shot"])]
                job_clips.append(dict(c, split=label, words=list(c["words"]), shot_start_frame=int(tr.start_frame),
                                      crop_cx=list(tr.crop_cx), crop_cy=list(tr.crop_cy), crop_h=list(tr.crop_h)))
            jobs.append(dict(episode_id=ep.episode_id, episode_index=int(ep.episode_index), path=ep.path,
                             truth=ep.truth, clips=job_clips))
        results = run_tasks(episode_shards, jobs, "write shards", out_dir=str(SHARDS), timing=t,
                            clips_per_shard=cfg.clips_per_shard)
        shutdown()
        counts, n_shards = {}, 0
        for job, res in results:
            if isinstance(res, Exception):
                reason = res.reason if isinstance(res, MediaError) else "failed"
                for c in job["clips"]:
                    ledger.reject(c["key"], reason, f"{type(res).__name__}: {res}")
                continue
            for r in res["results"]:
                if r["ok"]:
                    ledger.keep(r["key"], r["detail"])
                else:
                    ledger.reject(r["key"], "failed", r["detail"])
            for split, n in res["counts"].items():
                counts[split] = counts.get(split, 0) + n
            n_shards += res["shards"]
        # the models' episode map: embedding row i = episode_ids[i] (the download table's index),
        # plus one <unk> row; unseen episodes are evaluated with <unk>
        write_json(SHARDS / "episodes.json",
                   dict(episode_ids=list(episodes.episode_id), unseen_episodes=sorted(unseen)))
        write_ledger(ledger)
        metrics.update({f"clips_{s}": counts.get(s, 0) for s in ("train", "val", "test", "unseen")})
        metrics.update(shards=n_shards, clips_gap=int((ledger.frame().reason == "split_gap").sum()))
        metrics["split_notes"] = split_notes(counts, len(with_clips), len(unseen), cfg.unseen_episodes)
        for split, note in metrics["split_notes"].items():
            log.warning("shard: split %s is empty: %s", split, note)


def split_notes(counts: dict[str, int], n_episodes: int, n_unseen: int, unseen_wanted: int) -> dict[str, str]:
    """Why each empty split is empty (a small corpus adapts its splits; {} when none is empty)."""
    notes = {}
    if not counts.get("unseen"):
        notes["unseen"] = (f"{n_episodes} episode(s) with clips: at least one stays for training, so {n_unseen} of "
                           f"shard.unseen_episodes={unseen_wanted} held out" if unseen_wanted else
                           "shard.unseen_episodes: 0")
    for split in ("val", "test"):
        if not counts.get(split):
            notes[split] = (f"no {split} block: an episode needs {MIN_CLIPS_FOR_HOLDOUT} clips or more for val and "
                            f"test blocks (fewer: all its clips train), and shard.{split}_fraction > 0")
    if not counts.get("train"):
        notes["train"] = "no train clip was written (see data/shard/ledger.parquet)"
    return notes


if __name__ == "__main__":
    main()
