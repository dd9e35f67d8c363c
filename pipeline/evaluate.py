"""Stage `evaluate`: test-split figures for ground truth, reconstruction and generation side by
side, sample videos (ground truth | reconstruction | generation, with the clip's audio), the
sync-offset curves (reports/evaluate/plots/sync_offset/<source>.tsv) and the gallery page
reports/index.html.

`codec` (evaluate.codec_anchor_crf > 0): the ground truth through intra-only libx264 at that CRF,
scored like the three sources — a reference for what a known fidelity loss (its `psnr_db`, near
the dVAE's at the default CRF) costs in LSE, so the reconstruction's and generation's LSE can be
read against a standard codec's rather than against the untouched ground truth alone.

Seeds: the test clips are generated under `evaluate.seeds` sampling seeds (seed k of clip n:
evaluate.seed + SEED_STRIDE·k + n); `gen.*`, the samples, the offset curves and the distribution
figures are the first seed's (k = 0, the draws of earlier versions), `gen_vs_gt.*` the mean over
the seeds with `*_sd` (their standard deviation) beside each ratio.

Voices (nwt.eval.voices, issue 19): `voices.own` (the test clips' own audio, seed 0),
`voices.unseen` (the held-out voices of data/voices under every seed, with their ground truth's
`gt_lse_c` and the sync judge's `judge_unseen_accuracy` on them) and `voices.real` (the real human speech of
`evaluate.real_speech_dir`, read from outside the repository and not a DVC dependency: absent,
its figures are null with a `reason`). Each is scored alike: LSE by the stage's sync expert,
`mouth_audio_corr`, and the look of every generated frame (nwt.eval.look: val frames as the
reference, the dVAE reconstructions of the test ground truth as the held-out frames that set
each episode's p95 threshold: see Voices.calibrate);
`first_frame.look_ok_rate` is frame 0 of every generation (all seeds and conditions). Nothing
made from the real speech is written but figures and reports/evaluate/contact_sheet_real_vs_own.png
(generated frames only; with no real speech its real half is grey with the reason)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from nwt.bundle import reference_frames
from nwt.data.media import write_video
from nwt.data.shards import iter_clips, shard_paths
from nwt.data.tokens import load_token_clips, token_paths
from nwt.eval.anchor import x264_round_trip
from nwt.eval.control import control_summary, episode_control, real_region_stats
from nwt.eval.distribution import SYNC_FEAT, DistributionMetrics, standard_extractors
from nwt.eval.gallery import write_gallery
from nwt.eval.judge import judge_accuracy, saved_threshold, threshold_on
from nwt.eval.lipsync import load_scorer, lse_scores
from nwt.eval.look import LookReference
from nwt.eval.metrics import mouth_audio_corr, psnr_per_frame
from nwt.eval.nll import evaluate_nll
from nwt.eval.sheet import contact_sheet, pick_frames, write_png
from nwt.eval.sync_offset import mean_offset_curve, write_curve_tsv
from nwt.eval.voices import (
    Condition,
    generate_scored,
    load_real_speech,
    ratio,
    score_generation,
    seed_spread,
    voice_metrics,
)
from nwt.generate import Generator, add_mark, default_sampling
from nwt.geometry import Box, mouth_box, sync_mouth_box
from nwt.models.dvae_io import decode_codes, encode_frames
from nwt.params import EvaluateParams, SamplingParams, load_params
from nwt.stage import DATA, REPORTS, log, stage

SAMPLES = REPORTS / "evaluate" / "samples"
OFFSET_PLOTS = REPORTS / "evaluate" / "plots" / "sync_offset"
SYNC = "models/sync/sync.pt"
SOURCES = ("gt", "recon", "gen")
LSE_KEYS = ("lse_d", "lse_c", "av_offset_frames")
VOICES = DATA / "voices"  # the held-out voices' clips (stage `voices`), split `unseen`
SHEET = REPORTS / "evaluate" / "contact_sheet_real_vs_own.png"
SHEET_ROWS, SHEET_FRAMES = 4, 3  # generations shown per side, frames of each (first, middle, last)
SHEET_TITLES = ("generated from real human speech", "generated from the presenter's own voice")
SEED_STRIDE = 1000  # sampling seed k of test clip n: evaluate.seed + SEED_STRIDE·k + n
RATIO_KEYS = ("mouth_audio_corr", "lse_c", "lse_d")


@dataclass
class Tally:
    """What the test clips add up to, source by source (`scored`: the sources with LSE and mouth
    correlation: gt, recon, gen and, with a codec anchor, codec)."""

    scorers: dict  # metric-key prefix → sync scorer ("": the trained sync expert, "official_")
    scored: tuple[str, ...]
    mouth: Box  # the mouth box of mouth_audio_corr, from the framing (nwt.geometry.mouth_box)
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


def score_clip(n: int, clip, gen: Generator, cfg: EvaluateParams, sampling: SamplingParams, tally: Tally,
               distribution: DistributionMetrics) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruct, generate and score test clip `n`; write its sample video if it is one of the
    first. → (generated frames (t, H, W, 3), as long as the clip's audio; its reconstruction)."""
    spf = gen.timing.samples_per_frame
    episode_id = clip.meta["episode_id"]
    recon = decode_codes(gen.dvae, encode_frames(gen.dvae, clip.frames), gen.dvae_meta_episode_index(episode_id))
    result = gen.from_audio(clip.audio, episode_id if episode_id in gen.episode_ids else None,
                            sampling=sampling, seed=cfg.seed + n)
    tally.gen_seconds, tally.gen_wall = tally.gen_seconds + result.seconds, tally.gen_wall + result.wall_s
    t = min(len(clip.frames), len(result.frames))
    audio = clip.audio[: t * spf]
    tally.recon_psnr.append(psnr_per_frame(clip.frames, recon))
    tally.corr["gt"].append(mouth_audio_corr(clip.frames, clip.audio, spf, tally.mouth))
    tally.corr["recon"].append(mouth_audio_corr(recon, clip.audio, spf, tally.mouth))
    tally.corr["gen"].append(mouth_audio_corr(result.frames[:t], audio, spf, tally.mouth))
    videos = {"gt": clip.frames[:t], "recon": recon[:t], "gen": result.frames[:t]}
    for source, frames in videos.items():
        score_lse(tally, source, frames, audio, gen, distribution)
    for source, frames in videos.items():
        distribution.add_frames(source, frames)
    if cfg.codec_anchor_crf > 0:
        anchor = x264_round_trip(clip.frames[:t], gen.timing.fps, cfg.codec_anchor_crf, intra_only=True)
        tally.codec_psnr.append(psnr_per_frame(clip.frames[:t], anchor))
        tally.corr["codec"].append(mouth_audio_corr(anchor, audio, spf, tally.mouth))
        score_lse(tally, "codec", anchor, audio, gen)
    if n < cfg.samples:
        side = np.concatenate([clip.frames[:t], recon[:t], add_mark(result.frames[:t])], axis=2)
        write_video(SAMPLES / f"{clip.key}.webm", side, gen.timing.fps, audio, gen.timing.sample_rate,
                    metadata=gen.provenance())
        tally.samples.append(dict(key=clip.key, video=f"evaluate/samples/{clip.key}.webm",
                                  caption=f"{episode_id}, {t / gen.timing.fps:.1f} s"))
    return result.frames[:t], recon


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


@dataclass
class Voices:
    """How every voice condition is scored (the stage's sync expert, the mouth box, the look
    reference) and the presenter's own voice, seed 0, as the test clips give it."""

    scorer: object  # the trained sync expert: LSE of every condition, and the judge of the unseen voices
    sampling: SamplingParams  # how every condition is generated (nwt.generate.default_sampling)
    mouth: Box  # nwt.geometry.mouth_box of the faces params (mouth_audio_corr)
    look: LookReference | None  # None without val clips: no look figures
    own: Condition = field(default_factory=Condition)
    own_frames: dict = field(default_factory=dict)  # episode → sheet frames of its first test clip
    heldout: dict = field(default_factory=dict)  # episode → [every 2nd frame of its test reconstructions]

    def add_own(self, clip, generated: tuple[np.ndarray, np.ndarray], gen: Generator) -> None:
        """Test clip `clip`'s seed-0 generation and reconstruction (score_clip's)."""
        frames, recon = generated
        episode = clip.meta["episode_id"]
        self.own.add(score_generation(frames, clip.audio, episode if episode in gen.episode_ids else None,
                                      self.scorer, gen.timing, self.mouth, self.look))
        self.own_frames.setdefault(episode, pick_frames(frames, SHEET_FRAMES))
        self.heldout.setdefault(episode, []).append(recon[::2])

    def calibrate(self) -> None:
        """Each episode's look threshold from the dVAE reconstructions of its held-out test frames
        (not the raw frames: a perfect generator still renders through the dVAE, and raw frames'
        threshold would measure the dVAE's blur — its own reconstructions pass only 0–79 % of
        them per episode); then the own voice's looks are judged by it."""
        if self.look is None:
            return
        self.look.calibrate({e: np.concatenate(f) for e, f in self.heldout.items() if e in self.look.features})
        self.own.set_thresholds(self.look)
        self.heldout.clear()


def frames_by_episode(clips) -> dict[str, np.ndarray]:
    """Clips → episode id → all their frames (N, H, W, 3), in clip order."""
    out: dict[str, list] = {}
    for clip in clips:
        out.setdefault(clip.meta["episode_id"], []).append(clip.frames)
    return {e: np.concatenate(frames) for e, frames in out.items()}


def look_reference(val_clips, box: Box) -> LookReference | None:
    """Each episode's look from its val frames, the sync expert's mouth `box` left out (None
    without val clips: the look figures are then null). Calibrated by Voices.calibrate."""
    return LookReference.from_frames(frames_by_episode(val_clips), box) if val_clips else None


def seed_conditions(gen: Generator, cfg: EvaluateParams, clips, voices: Voices) -> list[Condition]:
    """The test clips generated again under seeds 1 … evaluate.seeds − 1, scored as seed 0."""
    out = []
    for k in range(1, cfg.seeds):
        cond = Condition()
        for n, clip in enumerate(tqdm(clips, desc=f"evaluate seed {k}", unit="clip")):
            cond.add(generate_scored(gen, clip.audio, clip.meta["episode_id"], voices.sampling,
                                     cfg.seed + SEED_STRIDE * k + n, voices.scorer, voices.mouth, voices.look)[0])
        out.append(cond)
    return out


def gen_vs_gt_spread(metrics: dict, seeds: list[Condition]) -> dict:
    """gen_vs_gt's ratios of seed 0 (summarise's) and of every further seed → mean and `_sd`."""
    gt = metrics["gt"]
    per_seed = [metrics["gen_vs_gt"]]
    for cond in seeds:
        figures = cond.figures()
        per_seed.append({f"{k}_ratio": ratio(figures[k], gt[k]) or 0.0 for k in RATIO_KEYS})
    return dict(seed_spread(per_seed), seeds=len(per_seed))


def unseen_voices(gen: Generator, cfg: EvaluateParams, voices: Voices, params) -> tuple[Condition, dict]:
    """Generations from the held-out voices' audio (data/voices) → their figures, and their
    rendered ground truth's LSE-C and the sync judge's accuracy on it (or the reason there are none)."""
    clips = list(iter_clips(shard_paths(VOICES, "unseen")))
    cond = Condition()
    if not clips:
        return cond, dict(reason=f"no unseen-voice clips in {VOICES} (stage voices)")
    # every seed: a voice has only a few clips, and its worst-voice ratio is the noisiest figure
    for k in range(cfg.seeds):
        for n, clip in enumerate(tqdm(clips, desc=f"evaluate unseen voices, seed {k}", unit="clip")):
            labels = {key: str(clip.meta.get(key, "")) for key in ("voice", "engine", "sex")}
            cond.add(generate_scored(gen, clip.audio, clip.meta["episode_id"], voices.sampling,
                                     cfg.seed + SEED_STRIDE * k + n, voices.scorer, voices.mouth, voices.look,
                                     clip=clip.key, **labels)[0])
    gt_lse_c = [lse_scores(voices.scorer, clip.frames, clip.audio, gen.timing)["lse_c"] for clip in clips]
    p = params.train_sync
    accuracy = judge_accuracy(voices.scorer, clips, p, gen.timing, p.seed, judge_threshold(voices.scorer, p, gen))
    return cond, dict(gt_lse_c=round(float(np.mean(gt_lse_c)), 4), judge_accuracy=round(float(accuracy), 4))


def judge_threshold(model, p, gen: Generator) -> float:
    """The sync judge's distance threshold: the one its sync.pt was saved with, or, for a sync.pt
    older than that, the one train_sync chose, recomputed on the train clips."""
    try:
        return saved_threshold(SYNC)
    except KeyError:
        log.warning("%s holds no distance threshold: recomputing it on the train clips", SYNC)
        return threshold_on(model, iter_clips(shard_paths(DATA / "shards", "train")), p, gen.timing, p.seed)


def real_speech(gen: Generator, cfg: EvaluateParams, voices: Voices, episodes: list) -> tuple[Condition, str, list]:
    """Generations from the real speech of evaluate.real_speech_dir, file n under episode
    n mod len(episodes) → (figures, why there are none, [(episode, sheet frames)])."""
    items, reason = load_real_speech(cfg.real_speech_dir, gen.timing.sample_rate)
    cond, rows = Condition(), []
    for n, (_, audio) in enumerate(tqdm(items, desc="evaluate real speech", unit="clip")):
        episode = episodes[n % len(episodes)]
        scored, frames = generate_scored(gen, audio, episode, voices.sampling, cfg.seed + n, voices.scorer,
                                         voices.mouth, voices.look)
        cond.add(scored)
        if len(rows) < SHEET_ROWS:
            rows.append((episode, pick_frames(frames, SHEET_FRAMES)))
    return cond, reason, rows


def write_sheet(real_rows: list, own_frames: dict, reason: str) -> None:
    """Real speech's generations beside the own voice's of the same episodes (no real speech:
    the own voice's first episodes beside a grey panel saying why)."""
    own = list(own_frames.values())
    right = [own_frames.get(e, own[i % len(own)]) for i, (e, _) in enumerate(real_rows)] or own[:SHEET_ROWS]
    write_png(SHEET, contact_sheet([f for _, f in real_rows], right, SHEET_TITLES,
                                   notes=(f"no real speech: {reason}", "")))


def voice_figures(metrics: dict, gen: Generator, cfg: EvaluateParams, params, clips, voices: Voices) -> None:
    """gen_vs_gt over the seeds, the voices block, first_frame and the contact sheet."""
    seeds = seed_conditions(gen, cfg, clips, voices)
    metrics["gen_vs_gt"] = gen_vs_gt_spread(metrics, seeds)
    unseen, extra = unseen_voices(gen, cfg, voices, params)
    episodes = [e for e in dict.fromkeys(c.meta["episode_id"] for c in clips) if e in gen.episode_ids] or [None]
    real, real_reason, rows = real_speech(gen, cfg, voices, episodes)
    metrics["voices"] = voice_metrics(voices.own, unseen, real, extra.get("reason", ""), real_reason,
                                      extra.get("gt_lse_c"))
    metrics["voices"]["judge_unseen_accuracy"] = extra.get("judge_accuracy")
    first = [ok for cond in (voices.own, *seeds, unseen, real) for ok in cond.first_frames_ok()]
    metrics["first_frame"] = dict(look_ok_rate=round(float(np.mean(first)), 4) if first else None,
                                  generations=len(first))
    if voices.look is None:
        metrics["first_frame"]["reason"] = "no val clips: no look reference"
    write_sheet(rows, voices.own_frames, real_reason)


def no_test_clips(metrics: dict) -> None:
    """What evaluate writes when the shard stage kept no test clip (an episode needs 5 clips for
    a test block, see reports/shard/metrics.json split_notes): a reason, and its declared outputs."""
    reason = "no test clips in data/shards (see split_notes in reports/shard/metrics.json)"
    log.warning("evaluate: %s: no figures", reason)
    metrics.update(test_clips=0, reason=reason)
    OFFSET_PLOTS.mkdir(parents=True, exist_ok=True)
    grey = [np.full((1, 64, 56, 3), 128, np.uint8)]
    write_png(SHEET, contact_sheet([], grey, SHEET_TITLES, notes=(reason, reason)))
    write_gallery(REPORTS / "index.html", [], metrics)


def main() -> None:
    params = load_params()
    cfg = params.evaluate
    with stage("evaluate") as metrics:
        # FID / FVD networks load first, so that a named but missing weights file stops the stage
        # (with what to download) before minutes of generation
        distribution = DistributionMetrics(standard_extractors(cfg), SOURCES)
        gen = Generator()
        # every generation starts from its episode's reference frame, as `nwt generate` with the
        # exported bundle does (the same frames: nwt.bundle.reference_frames)
        gen.references = reference_frames(DATA / "shards", gen.episode_ids, list(gen.dvae_meta.get("unseen_ids", [])))
        for out in (SAMPLES, OFFSET_PLOTS):
            if out.exists():
                shutil.rmtree(out)
        SAMPLES.mkdir(parents=True)
        scorers = {"": load_scorer(SYNC)[0]}
        if cfg.syncnet_weights:
            scorers["official_"] = load_scorer(cfg.syncnet_weights, face_scale=params.faces.face_scale,
                                               centre_shift=params.faces.centre_shift)[0]
        tally = Tally(scorers, (*SOURCES, "codec") if cfg.codec_anchor_crf > 0 else SOURCES,
                      mouth_box(params.faces.face_scale, params.faces.centre_shift))
        clips = list(iter_clips(shard_paths(DATA / "shards", "test")))
        if not clips:  # a corpus too small for a test block: every figure null, the outputs still written
            no_test_clips(metrics)
            return
        if cfg.seeds < 1:
            raise ValueError(f"evaluate.seeds must be ≥ 1, got {cfg.seeds}")
        look = look_reference(list(iter_clips(shard_paths(DATA / "shards", "val"))),
                              sync_mouth_box(params.faces.face_scale, params.faces.centre_shift))
        voices = Voices(scorers[""], default_sampling(params), tally.mouth, look)
        for n, clip in enumerate(tqdm(clips, desc="evaluate test clips", unit="clip")):
            voices.add_own(clip, score_clip(n, clip, gen, cfg, voices.sampling, tally, distribution), gen)
        voices.calibrate()
        test_tokens = load_token_clips(token_paths(DATA / "tokens", "test"))
        train_tokens = load_token_clips(token_paths(DATA / "tokens", "train"))
        nll = evaluate_nll(gen.prior, test_tokens, train_tokens) if test_tokens else {}
        summarise(metrics, tally, distribution, nll, cfg.codec_anchor_crf)
        metrics["test_clips"] = len(clips)
        voice_figures(metrics, gen, cfg, params, clips, voices)
        # episode control: the same test audio generated under every trained episode, decoded with
        # the dVAE's <unk> look so that only the prior's codes carry the episode (val frames = reference)
        references = real_region_stats((c.meta["episode_id"], c.frames)
                                       for c in iter_clips(shard_paths(DATA / "shards", "val")))
        control = episode_control(gen, [c.audio for c in clips[: cfg.control_clips]], references, voices.sampling,
                                  seed=cfg.seed)
        metrics["episode_control"] = control_summary(control)  # accuracy null + reason below two episodes
        write_gallery(REPORTS / "index.html", tally.samples, metrics,
                      images=[dict(src=f"evaluate/{SHEET.name}", caption=" | ".join(SHEET_TITLES))])


if __name__ == "__main__":
    main()
