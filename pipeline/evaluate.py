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
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from nwt.data.media import write_video
from nwt.data.shards import iter_clips, shard_paths
from nwt.data.tokens import load_token_clips, token_paths
from nwt.eval.anchor import x264_round_trip
from nwt.eval.control import episode_control, real_region_stats
from nwt.eval.distribution import SYNC_FEAT, DistributionMetrics, standard_extractors
from nwt.eval.gallery import write_gallery
from nwt.eval.lipsync import load_scorer, lse_scores
from nwt.eval.metrics import mouth_audio_corr, psnr_per_frame
from nwt.eval.nll import evaluate_nll
from nwt.eval.sync_offset import mean_offset_curve, write_curve_tsv
from nwt.generate import Generator, add_mark
from nwt.models.dvae_io import decode_codes, encode_frames
from nwt.params import EvaluateParams, load_params
from nwt.stage import DATA, REPORTS, stage

SAMPLES = REPORTS / "evaluate" / "samples"
OFFSET_PLOTS = REPORTS / "evaluate" / "plots" / "sync_offset"
SYNC = "models/sync/sync.pt"
SOURCES = ("gt", "recon", "gen")
LSE_KEYS = ("lse_d", "lse_c", "av_offset_frames")


@dataclass
class Tally:
    """What the test clips add up to, source by source (`scored`: the sources with LSE and mouth
    correlation: gt, recon, gen and, with a codec anchor, codec)."""

    scorers: dict  # metric-key prefix → sync scorer ("": the trained sync expert, "official_")
    scored: tuple[str, ...]
    corr: dict = field(default_factory=dict)
    lse: dict = field(default_factory=dict)
    offsets: dict = field(default_factory=dict)  # (prefix, source) → lse_scores per clip
    recon_psnr: list = field(default_factory=list)
    codec_psnr: list = field(default_factory=list)
    gen_seconds: float = 0.0
    gen_wall: float = 0.0
    samples: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.corr = {s: [] for s in self.scored}
        self.lse = {(prefix, s, k): [] for prefix in self.scorers for s in self.scored for k in LSE_KEYS}
        self.offsets = {(prefix, s): [] for prefix in self.scorers for s in SOURCES}


def score_lse(tally: Tally, source: str, frames: np.ndarray, audio: np.ndarray, gen: Generator,
              distribution: DistributionMetrics | None = None) -> None:
    """LSE of one source's clip by every scorer; with `distribution`, also its offset curve and
    the sync expert's window embeddings (the distribution features)."""
    for prefix, scorer in tally.scorers.items():
        scores = lse_scores(scorer, frames, audio, gen.timing)
        for k in LSE_KEYS:
            tally.lse[(prefix, source, k)].append(float(scores[k]))
        if distribution is None:
            continue
        embeddings = scores.pop("video_emb")  # (windows, D): not kept with the curves
        tally.offsets[(prefix, source)].append(scores)
        if not prefix:  # the sync expert's window embeddings double as distribution features
            distribution.add(SYNC_FEAT, source, embeddings)


def score_clip(n: int, clip, gen: Generator, cfg: EvaluateParams, tally: Tally,
               distribution: DistributionMetrics) -> None:
    """Reconstruct, generate and score test clip `n`; write its sample video if it is one of the first."""
    spf = gen.timing.samples_per_frame
    episode_id = clip.meta["episode_id"]
    recon = decode_codes(gen.dvae, encode_frames(gen.dvae, clip.frames), gen.dvae_meta_episode_index(episode_id))
    result = gen.from_audio(clip.audio, episode_id if episode_id in gen.episode_ids else None,
                            sampling=cfg.sampling, seed=cfg.seed + n)
    tally.gen_seconds, tally.gen_wall = tally.gen_seconds + result.seconds, tally.gen_wall + result.wall_s
    t = min(len(clip.frames), len(result.frames))
    audio = clip.audio[: t * spf]
    tally.recon_psnr.append(psnr_per_frame(clip.frames, recon))
    tally.corr["gt"].append(mouth_audio_corr(clip.frames, clip.audio, spf))
    tally.corr["recon"].append(mouth_audio_corr(recon, clip.audio, spf))
    tally.corr["gen"].append(mouth_audio_corr(result.frames[:t], audio, spf))
    videos = {"gt": clip.frames[:t], "recon": recon[:t], "gen": result.frames[:t]}
    for source, frames in videos.items():
        score_lse(tally, source, frames, audio, gen, distribution)
    for source, frames in videos.items():
        distribution.add_frames(source, frames)
    if cfg.codec_anchor_crf > 0:
        anchor = x264_round_trip(clip.frames[:t], gen.timing.fps, cfg.codec_anchor_crf, intra_only=True)
        tally.codec_psnr.append(psnr_per_frame(clip.frames[:t], anchor))
        tally.corr["codec"].append(mouth_audio_corr(anchor, audio, spf))
        score_lse(tally, "codec", anchor, audio, gen)
    if n < cfg.samples:
        side = np.concatenate([clip.frames[:t], recon[:t], add_mark(result.frames[:t])], axis=2)
        write_video(SAMPLES / f"{clip.key}.webm", side, gen.timing.fps, audio, gen.timing.sample_rate,
                    metadata=gen.provenance())
        tally.samples.append(dict(key=clip.key, video=f"evaluate/samples/{clip.key}.webm",
                                  caption=f"{episode_id}, {t / gen.timing.fps:.1f} s"))


def summarise(metrics: dict, tally: Tally, distribution: DistributionMetrics, nll: dict, codec_crf: float) -> None:
    """The per-source figures, ratios to the ground truth, offset curves and real-time factor."""
    for source, values in tally.corr.items():
        metrics[source] = dict(mouth_audio_corr=round(float(np.mean(values)), 4))
    for (prefix, source, k), values in tally.lse.items():
        # av_offset: mean absolute offset (frames) — 0 is in sync
        value = np.mean(np.abs(values)) if k == "av_offset_frames" else np.mean(values)
        metrics[source][prefix + k] = round(float(value), 4)
    metrics["recon"]["psnr_db"] = round(float(np.concatenate(tally.recon_psnr).mean()), 3)  # mean over all frames
    per_source, extra = distribution.metrics()
    for source, values in per_source.items():
        metrics[source].update(values)
    metrics.update(extra)
    for (prefix, source), results in tally.offsets.items():
        write_curve_tsv(OFFSET_PLOTS / f"{prefix}{source}.tsv", mean_offset_curve(results))
    metrics["gen"]["test_nll_bits_per_code"] = round(float(nll.get("nll_bits_per_code", float("nan"))), 4)

    def to_gt(source: str, key: str) -> float:  # source's figure over the ground truth's (0 if that is ≈ 0)
        reference = metrics["gt"][key]
        return round(metrics[source][key] / reference, 4) if abs(reference) > 1e-6 else 0.0

    metrics["gen_vs_gt"] = {f"{k}_ratio": to_gt("gen", k) for k in ("mouth_audio_corr", "lse_c", "lse_d")}
    if codec_crf > 0:
        metrics["codec"].update(psnr_db=round(float(np.concatenate(tally.codec_psnr).mean()), 4), crf=codec_crf,
                                **{f"{k}_ratio": to_gt("codec", k) for k in ("lse_c", "lse_d")})
    metrics["rtf"] = round(tally.gen_seconds / max(tally.gen_wall, 1e-9), 3)


def main() -> None:
    params = load_params()
    cfg = params.evaluate
    with stage("evaluate") as metrics:
        # FID / FVD networks load first, so that a named but missing weights file stops the stage
        # (with what to download) before minutes of generation
        distribution = DistributionMetrics(standard_extractors(cfg), SOURCES)
        gen = Generator()
        for out in (SAMPLES, OFFSET_PLOTS):
            if out.exists():
                shutil.rmtree(out)
        SAMPLES.mkdir(parents=True)
        scorers = {"": load_scorer(SYNC)[0]}
        if cfg.syncnet_weights:
            scorers["official_"] = load_scorer(cfg.syncnet_weights, face_scale=params.faces.face_scale)[0]
        tally = Tally(scorers, (*SOURCES, "codec") if cfg.codec_anchor_crf > 0 else SOURCES)
        clips = list(iter_clips(shard_paths(DATA / "shards", "test")))
        if not clips:
            raise RuntimeError("no test clips in data/shards: the shard stage kept none "
                               "(see data/shard/ledger.parquet)")
        for n, clip in enumerate(tqdm(clips, desc="evaluate test clips", unit="clip")):
            score_clip(n, clip, gen, cfg, tally, distribution)
        test_tokens = load_token_clips(token_paths(DATA / "tokens", "test"))
        train_tokens = load_token_clips(token_paths(DATA / "tokens", "train"))
        nll = evaluate_nll(gen.prior, test_tokens, train_tokens) if test_tokens else {}
        summarise(metrics, tally, distribution, nll, cfg.codec_anchor_crf)
        metrics["test_clips"] = len(clips)
        # episode control: the same test audio generated under every trained episode, decoded with
        # the dVAE's <unk> look so that only the prior's codes carry the episode (val frames = reference)
        references = real_region_stats((c.meta["episode_id"], c.frames)
                                       for c in iter_clips(shard_paths(DATA / "shards", "val")))
        control = episode_control(gen, [c.audio for c in clips[: cfg.control_clips]], references, cfg.sampling,
                                  seed=cfg.seed)
        metrics["episode_control"] = dict(accuracy=round(float(control["accuracy"]), 4),
                                          generations=int(control["generations"]))
        write_gallery(REPORTS / "index.html", tally.samples, metrics)


if __name__ == "__main__":
    main()
