"""Stage `train_dvae`: dVAE-Adv with Memcodes on the shards → models/dvae/ (resumable),
then the dVAE's rate–distortion point beside libx264 on the val clips (nwt.eval.codec)."""
from __future__ import annotations

import json
from pathlib import Path

from nwt.atomic import write_json
from nwt.data.shards import shard_paths
from nwt.eval.codec import rd_against_dvae
from nwt.params import load_params
from nwt.stage import DATA, REPORTS, stage
from nwt.train.dvae import train_dvae


def main() -> None:
    params = load_params()
    p, timing = params.train_dvae, params.media.timing
    episodes = json.loads((DATA / "shards" / "episodes.json").read_text())
    with stage("train_dvae") as metrics:
        result = train_dvae(p, timing, DATA / "shards", Path("models/dvae"), REPORTS / "train_dvae",
                            episode_ids=episodes["episode_ids"], unseen_ids=episodes["unseen_episodes"])
        metrics.update(result)
        # x264 (inter and intra-only) on the same val clips and frame stride as val.psnr_db
        rd_json = REPORTS / "train_dvae" / "rd_x264.json"
        rd = rd_against_dvae(shard_paths(DATA / "shards", "val"), result, rd_json, fps=timing.fps,
                             eval_stride=p.val_frame_stride)
        if not rd and "val" in result:  # rank 0 without val clips: an empty curve, null figures and why
            write_json(rd_json, [])
            none = {"bits_at_same_psnr": None, "reason": "no val clips to compare on"}
            rd = {"x264": none, "x264_intra": dict(none)}
        metrics.update(rd)


if __name__ == "__main__":
    main()
