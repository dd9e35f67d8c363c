"""Stage `evaluate`: test-split figures for ground truth, reconstruction and generation side by
side, sample videos (ground truth | reconstruction | generation, with the clip's audio), the
sync-offset curves (reports/evaluate/plots/sync_offset/<source>.tsv) and the gallery page
reports/index.html.

`codec` (evaluate.codec_anchor_crf > 0): the ground truth through intra-only libx264 at that CRF,
scored like the three sources — a reference for what a known fidelity loss (its `psnr_db`, near
the dVAE's at the default CRF) costs in LSE, so the reconstruction's and generation's LSE can be
read against a standard codec's rather than against the untouched ground truth alone."""
from __future__ import annotations

import shutil

import numpy as np
from tqdm import tqdm

from nwt.data.shards import iter_clips, shard_paths
from nwt.data.tokens import load_token_clips, token_paths
from nwt.eval.anchor import x264_round_trip
from nwt.eval.control import episode_control, real_region_stats
from nwt.eval.distribution import SYNC_FEAT, DistributionMetrics, standard_extractors
from nwt.eval.gallery import write_gallery
from nwt.eval.lipsync import load_scorer, lse_scores
from nwt.eval.metrics import mouth_audio_corr, psnr_per_frame
from nwt.eval.sync_offset import mean_offset_curve, write_curve_tsv
from nwt.generate import Generator, add_mark
from nwt.models.dvae_io import decode_codes, encode_frames
from nwt.data.media import write_video
from nwt.params import load_params, section
from nwt.stage import DATA, REPORTS, stage
from nwt.eval.nll import evaluate_nll

SAMPLES = REPORTS / "evaluate" / "samples"
OFFSET_PLOTS = REPORTS / "evaluate" / "plots" / "sync_offset"
SYNC = "models/sync/sync.pt"
SOURCES = ("gt", "recon", "gen")
LSE_KEYS = ("lse_d", "lse_c", "av_offset_frames")


def main() -> None:
    params = load_params()
    cfg = section(params, "evaluate")
    with stage("evaluate") as metrics:
        # FID / FVD networks load first, so that a named but missing weights file stops the stage
        # (with what to download) before minutes of generation
        distribution = DistributionMetrics(standard_extractors(cfg), SOURCES)
        gen = Generator()
        spf = gen.timing.samples_per_frame
        for out in (SAMPLES, OFFSET_PLOTS):
            if out.exists():
                shutil.rmtree(out)
        SAMPLES.mkdir(parents=True)
        scorers = {"": load_scorer(SYNC)[0]}
        if cfg.get("syncnet_weights"):
            scorers["official_"] = load_scorer(cfg["syncnet_weights"])[0]
        offset_results = {(prefix, s): [] for prefix in scorers for s in SOURCES}  # lse_scores per clip
        codec_crf = float(cfg.get("codec_anchor_crf", 0))
        scored = (*SOURCES, "codec") if codec_crf > 0 else SOURCES  # sources with LSE and mouth correlation
        corr = {s: [] for s in scored}
        lse = {(prefix, s, k): [] for prefix in scorers for s in scored for k in LSE_KEYS}
        recon_psnr, codec_psnr, gen_seconds, gen_wall, samples = [], [], 0.0, 0.0, []
        clips = list(iter_clips(shard_paths(DATA / "shards", "test")))
        if not clips:
            raise RuntimeError("no test clips in data/shards: the shard stage kept none (see data/shard/ledger.parquet)")
        for n, clip in enumerate(tqdm(clips, desc="evaluate test clips", unit="clip")):
            episode_id = clip.meta["episode_id"]
            dvae_index = gen.dvae_meta_episode_index(episode_id)
            recon = decode_codes(gen.dvae, encode_frames(gen.dvae, clip.frames), dvae_index)
            result = gen.from_audio(clip.audio, episode_id if episode_id in gen.episode_ids else None,
                                    temperature=float(cfg["temperature"]), top_k=int(cfg["top_k"]),
                                    seed=int(cfg["seed"]) + n, guidance=float(cfg["guidance"]))
            gen_seconds, gen_wall = gen_seconds + result.seconds, gen_wall + result.wall_s
            t = min(len(clip.frames), len(result.frames))
            recon_psnr.append(psnr_per_frame(clip.frames, recon))
            corr["gt"].append(mouth_audio_corr(clip.frames, clip.audio, spf))
            corr["recon"].append(mouth_audio_corr(recon, clip.audio, spf))
            corr["gen"].append(mouth_audio_corr(result.frames[:t], clip.audio[: t * spf], spf))
            videos = {"gt": clip.frames[:t], "recon": recon[:t], "gen": result.frames[:t]}
            for prefix, scorer in scorers.items():
                for source, frames in videos.items():
                    scores = lse_scores(scorer, frames, clip.audio[: t * spf], gen.timing)
                    for k in LSE_KEYS:
                        lse[(prefix, source, k)].append(float(scores[k]))
                    embeddings = scores.pop("video_emb")  # (windows, D): not kept with the curves
                    offset_results[(prefix, source)].append(scores)
                    if not prefix:  # the sync expert's window embeddings double as distribution features
                        distribution.add(SYNC_FEAT, source, embeddings)
            for source, frames in videos.items():
                distribution.add_frames(source, frames)
            if codec_crf > 0:
                anchor = x264_round_trip(clip.frames[:t], gen.timing.fps, codec_crf, intra_only=True)
                codec_psnr.append(psnr_per_frame(clip.frames[:t], anchor))
                corr["codec"].append(mouth_audio_corr(anchor, clip.audio[: t * spf], spf))
                for prefix, scorer in scorers.items():
                    scores = lse_scores(scorer, anchor, clip.audio[: t * spf], gen.timing)
                    for k in LSE_KEYS:
                        lse[(prefix, "codec", k)].append(float(scores[k]))
            if n < int(cfg["samples"]):
                side = np.concatenate([clip.frames[:t], recon[:t], add_mark(result.frames[:t])], axis=2)
                write_video(SAMPLES / f"{clip.key}.webm", side, gen.timing.fps, clip.audio[: t * spf],
                            gen.timing.sample_rate, metadata=gen.provenance())
                samples.append(dict(key=clip.key, video=f"evaluate/samples/{clip.key}.webm",
                                    caption=f"{episode_id}, {t / gen.timing.fps:.1f} s"))
        test_tokens = load_token_clips(token_paths(DATA / "tokens", "test"))
        train_tokens = load_token_clips(token_paths(DATA / "tokens", "train"))
        nll = evaluate_nll(gen.prior, test_tokens, train_tokens) if test_tokens else {}
        for source, values in corr.items():
            metrics[source] = dict(mouth_audio_corr=round(float(np.mean(values)), 4))
        for (prefix, source, k), values in lse.items():
            # av_offset: mean absolute offset (frames) — 0 is in sync
            value = np.mean(np.abs(values)) if k == "av_offset_frames" else np.mean(values)
            metrics[source][prefix + k] = round(float(value), 4)
        metrics["recon"]["psnr_db"] = round(float(np.concatenate(recon_psnr).mean()), 3)  # psnr_db: mean over all frames
        per_source, extra = distribution.metrics()
        for source, values in per_source.items():
            metrics[source].update(values)
        metrics.update(extra)
        for (prefix, source), results in offset_results.items():
            write_curve_tsv(OFFSET_PLOTS / f"{prefix}{source}.tsv", mean_offset_curve(results))
        metrics["gen"]["test_nll_bits_per_code"] = round(float(nll.get("nll_bits_per_code", float("nan"))), 4)
        def to_gt(source: str, key: str) -> float:  # source's figure over the ground truth's (0 if that is ≈ 0)
            reference = metrics["gt"][key]
            return round(metrics[source][key] / reference, 4) if abs(reference) > 1e-6 else 0.0

        metrics["gen_vs_gt"] = {f"{k}_ratio": to_gt("gen", k) for k in ("mouth_audio_corr", "lse_c", "lse_d")}
        if codec_crf > 0:
            metrics["codec"].update(psnr_db=round(float(np.concatenate(codec_psnr).mean()), 4), crf=codec_crf,
                                    **{f"{k}_ratio": to_gt("codec", k) for k in ("lse_c", "lse_d")})
        metrics["rtf"] = round(gen_seconds / max(gen_wall, 1e-9), 3)
        metrics["test_clips"] = len(clips)
        # episode control: the same test audio generated under every trained episode, decoded with
        # the dVAE's <unk> look so that only the prior's codes carry the episode (val frames = reference)
        references = real_region_stats((c.meta["episode_id"], c.frames)
                                       for c in iter_clips(shard_paths(DATA / "shards", "val")))
        control_audio = [c.audio for c in clips[: int(cfg["control_clips"])]]
        control = episode_control(gen, control_audio, references, temperature=float(cfg["temperature"]),
                                  top_k=int(cfg["top_k"]), seed=int(cfg["seed"]), guidance=float(cfg["guidance"]))
        metrics["episode_control"] = dict(accuracy=round(float(control["accuracy"]), 4),
                                          generations=int(control["generations"]))
        write_gallery(REPORTS / "index.html", samples, metrics)


if __name__ == "__main__":
    main()
