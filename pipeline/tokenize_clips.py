"""Stage `tokenize`: every clip of every split → memcode indices + aligned log-mel (data/tokens/).

(Not named tokenize.py: a script directory is first on sys.path, and that name shadows the
stdlib module that numpy imports.)
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from nwt.data.shards import SPLITS, ShardWriter, iter_clips, shard_paths
from nwt.data.tokens import token_sample, write_codebook
from nwt.models.audio_features import log_mel
from nwt.models.dvae_io import encode_frames, load_dvae
from nwt.params import load_params
from nwt.stage import DATA, stage

TOKENS = DATA / "tokens"


def main() -> None:
    p = load_params()
    cfg, t = p.tokenize, p.media.timing
    with stage("tokenize") as metrics:
        model, meta = load_dvae(Path("models/dvae/dvae.pt"))
        if TOKENS.exists():
            shutil.rmtree(TOKENS)
        TOKENS.mkdir(parents=True)
        with torch.no_grad():
            write_codebook(TOKENS, model.memcodes.values().float().cpu().numpy())  # (heads, K, d)
        frames_done = 0
        for split in SPLITS:
            n_clips = 0
            for path in shard_paths(DATA / "shards", split):
                # one token shard per clip shard, same name: keys and order stay aligned
                number = int(Path(path).stem.split("-")[-1])
                with ShardWriter(TOKENS, split, max_count=1 << 30, start_index=number) as writer:
                    for clip in tqdm(iter_clips([path]), desc=f"tokenize {Path(path).name}", unit="clip"):
                        codes = encode_frames(model, clip.frames, batch_size=cfg.batch_size)
                        mel = log_mel(clip.audio, t).numpy()  # (4T, 80)
                        writer.write(token_sample(clip.key, codes, mel, dict(
                            episode_id=clip.meta["episode_id"], episode_index=clip.episode_index, split=split,
                            fps=t.fps, sample_rate=t.sample_rate, num_codes=model.dims.num_codes,
                            source_shard=Path(path).name)))
                        n_clips += 1
                        frames_done += len(clip.frames)
            metrics[f"clips_{split}"] = n_clips
        metrics["frames"] = frames_done
        metrics["grid"] = list(codes.shape[1:]) if frames_done else []


if __name__ == "__main__":
    main()
