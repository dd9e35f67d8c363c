"""train_prior on synthetic token shards whose codes are a function of the audio."""
import logging
import os
import socket

import numpy as np
import pytest
import torch
import webdataset as wds
from repo_params import PARAMS, TIMING

from nwt.data.tokens import token_sample, write_codebook
from nwt.models.prior_io import load_prior
from nwt.params import PriorParams, with_changes
from nwt.train.prior import train_prior

torch.set_num_threads(1)

N_MELS_TEST, STATES, NUM_CODES = 8, 4, 8
EPISODES = ["ep0", "ep1"]
TINY_CFG = dict(
    seed=0, layers=1, dim=32, heads=2, audio_layers=1, audio_window=1, context_frames=8, code_dim=4,
    spatial_dim=8, window_frames=8, steps=8, batch_size=8, lr=3e-3, warmup_steps=2, checkpoint_every=2,
    log_every=2, prev_frame_dropout=0.3, code_noise=0.05, episode_dropout=0.1,
)
NO_VOICE_AUG = dict(aug_mel_warp=0.0, aug_mel_eq=0.0, aug_mel_gain=0.0, aug_mel_noise=0.0, aug_reverb=0.0,
                    aug_tempo=0.0)


def synth_clip(rng: np.random.Generator, frames: int):
    """Each frame has a random 'state' (i.i.d., so the previous frame says nothing about it);
    the state lights one pair of mel bands, and fixes every code of the frame."""
    states = rng.integers(0, STATES, frames)
    mel = rng.normal(0, 0.1, (frames * 4, N_MELS_TEST)).astype(np.float32)
    for t, s in enumerate(states):
        mel[4 * t : 4 * t + 4, 2 * s : 2 * s + 2] += 1.0
    pos = np.arange(2 * 2 * 2).reshape(2, 2, 2)  # (H', W', heads)
    codes = ((states[:, None, None, None] * 2 + pos) % NUM_CODES).astype(np.uint16)  # (T, 2, 2, 2)
    return codes, mel


def write_tokens(token_dir, clips_per_split=None, frames=24, seed=0, codebook=True):
    clips_per_split = clips_per_split or dict(train=12, val=4)
    rng = np.random.default_rng(seed)
    token_dir.mkdir(parents=True, exist_ok=True)
    if codebook:  # what tokenize writes beside the shards: the dVAE's code values (2 heads × d 6 here)
        write_codebook(token_dir, rng.normal(size=(2, NUM_CODES, 6)))
    for split, n in clips_per_split.items():
        with wds.TarWriter(str(token_dir / f"{split}-000000.tar")) as sink:
            for i in range(n):
                codes, mel = synth_clip(rng, frames)
                ep = i % len(EPISODES)
                meta = dict(episode_id=EPISODES[ep], episode_index=ep, fps=25, sample_rate=16000, split=split,
                            num_codes=NUM_CODES)
                sink.write(token_sample(f"{split}_{i:03d}", codes, mel, meta))
    return token_dir


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return write_tokens(tmp_path_factory.mktemp("tokens"))


def tiny(**changes) -> PriorParams:
    """params.yaml's prior section at the TINY_CFG size, with `changes`."""
    return with_changes(PARAMS.prior, **{**TINY_CFG, **changes})


def run(tokens, root, **kw):
    stop_after = kw.pop("stop_after", None)
    return train_prior(tiny(**kw), TIMING, tokens, root / "ckpt", root / "report", EPISODES, stop_after=stop_after)


def test_learns_to_listen(tokens, tmp_path):
    m = run(tokens, tmp_path, steps=150, checkpoint_every=150, log_every=25, prev_frame_dropout=0.0)
    val = m["val"]
    assert m["train"]["steps"] == 150 and m["train"]["frames_per_s"] > 0 and m["train"]["wall_s"] > 0
    assert 1.5 < val["unigram_entropy_bits"] < 2.1  # 4 equiprobable states per code
    assert val["nll_bits_per_code"] < 0.5 * val["unigram_entropy_bits"], val
    assert val["nll_shuffled_audio_bits_per_code"] > val["nll_bits_per_code"] + 0.5, val
    assert val["code_accuracy"] > 0.8, val
    assert 0 <= val["kl"] < 20, val  # the style posterior's KL per window (nats), in the ELBO above
    assert m["warnings"] == []  # it listens: no learning-failure warning
    # the exported prior rebuilds from the file alone and samples what the audio says
    model, meta = load_prior(tmp_path / "ckpt" / "prior.pt", "cpu")
    assert meta["episode_ids"] == EPISODES and meta["step"] == 150 and meta["timing"]["fps"] == 25
    codes, mel = synth_clip(np.random.default_rng(9), 10)
    sampled = model.sample(torch.from_numpy(mel), 0, top_k=1, seed=0)
    assert sampled.shape == (10, 2, 2, 2)
    assert (sampled.numpy() == codes).mean() > 0.8
    assert (tmp_path / "report" / "metrics.json").exists()  # dvclive wrote its logs


def test_resume_extends_and_interruption_is_exact(tokens, tmp_path):
    assert run(tokens, tmp_path / "a", steps=4)["train"]["steps"] == 4
    assert run(tokens, tmp_path / "a", steps=8)["train"]["steps"] == 8  # resumes at 4, ends at 8
    straight = run(tokens, tmp_path / "b", steps=8)
    assert straight["train"]["steps"] == 8
    # interrupted after step 4 (checkpoint at 4), then rerun: same weights as the straight run
    assert run(tokens, tmp_path / "c", steps=8, stop_after=4)["train"]["steps"] == 4
    assert not (tmp_path / "c" / "ckpt" / "prior.pt").exists()
    resumed = run(tokens, tmp_path / "c", steps=8)
    assert resumed["train"]["steps"] == 8
    sb = torch.load(tmp_path / "b" / "ckpt" / "prior.pt", weights_only=True)
    sc = torch.load(tmp_path / "c" / "ckpt" / "prior.pt", weights_only=True)
    assert sb["fingerprint"] == sc["fingerprint"] and sc["step"] == 8
    for k in sb["state_dict"]:
        assert torch.equal(sb["state_dict"][k], sc["state_dict"][k]), k
    assert resumed["val"] == straight["val"]


def test_fingerprint_change_starts_fresh(tokens, tmp_path, caplog):
    run(tokens, tmp_path, steps=2)
    caplog.set_level(logging.INFO, logger="nwt")
    out = run(tokens, tmp_path, steps=4)
    assert "resuming" in caplog.text and out["train"]["steps"] == 4
    caplog.clear()
    out = run(tokens, tmp_path, steps=4, layers=2)
    assert "starting fresh" in caplog.text
    assert out["train"]["steps"] == 4
    ckpt = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert ckpt["dims"]["layers"] == 2 and ckpt["step"] == 4


def _ddp_worker(rank, world, port, tokens, root):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    out = run(tokens, root, steps=2)
    if rank == 0:
        assert out["train"]["steps"] == 2
    else:
        assert out == {}


def test_ddp_gloo_two_processes(tokens, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, tokens, tmp_path), nprocs=2, join=True)
    ckpt = torch.load(tmp_path / "ckpt" / "prior.pt", weights_only=True)
    assert ckpt["step"] == 2


def test_no_style_latent_has_zero_kl(tokens, tmp_path):
    m = run(tokens, tmp_path, steps=2, style_dim=0)
    assert m["val"]["kl"] == 0.0
    assert torch.load(tmp_path / "ckpt" / "prior.pt", weights_only=True)["dims"]["style_dim"] == 0


def test_style_kl_term_free_bits_and_annealing():
    from nwt.train.prior import style_kl_term

    cfg = tiny(style_kl_weight=1.0, style_free_bits=0.5, style_kl_anneal_steps=10)
    kl = torch.tensor([0.1, 2.0])
    assert style_kl_term(kl, 9, cfg, 10).item() == pytest.approx((0.5 + 2.0) / 10)
    assert style_kl_term(kl, 4, cfg, 10).item() == pytest.approx(0.5 * (0.5 + 2.0) / 10)
    assert style_kl_term(torch.zeros(0), 9, cfg, 10).item() == 0.0


def test_no_seam_at_context_window_borders(tokens, tmp_path):
    """Long sampling with a trained tiny model: the frame-to-frame code change at the borders
    of context windows (every context_frames frames) and of audio chunks is no larger than
    inside them — the sliding KV cache has no border to show."""
    run(tokens, tmp_path, steps=40, checkpoint_every=40, log_every=20)
    model, _ = load_prior(tmp_path / "ckpt" / "prior.pt", "cpu")
    ctx = model.dims.context_frames  # 8
    _, mel = synth_clip(np.random.default_rng(5), 480)
    codes = model.sample(torch.from_numpy(mel), 0, temperature=1.0, seed=0, audio_chunk_frames=2 * ctx).numpy()
    change = (codes[1:] != codes[:-1]).reshape(len(codes) - 1, -1).mean(1)  # change[i]: frame i → i+1
    t = np.arange(1, len(codes))  # the frame each change leads to
    border = change[t % ctx == 0]
    inside = change[t % ctx != 0]
    se = np.sqrt(border.var() / len(border) + inside.var() / len(inside))
    print(f"seam: border {border.mean():.3f} ± {border.std() / np.sqrt(len(border)):.3f} (n={len(border)}), "
          f"inside {inside.mean():.3f} (n={len(inside)})")
    assert border.mean() <= inside.mean() + 3 * se + 0.02, (border.mean(), inside.mean(), se)
    # and the codes follow the audio across borders as inside windows
    truth, _ = synth_clip(np.random.default_rng(5), 480)
    hit = (codes == truth).reshape(len(codes), -1).mean(1)
    assert abs(hit[np.arange(len(codes)) % ctx == 0].mean() - hit.mean()) < 0.1


def test_mar_mode_trains_exports_and_evaluates(tokens, tmp_path):
    """prior.mode: mar through the same training loop: it learns to listen, its prior.pt
    rebuilds with the mode, samples what the audio says, and evaluate_nll (the evaluate
    stage's figures) reads it unchanged."""
    from nwt.data.tokens import load_token_clips, token_paths
    from nwt.eval.nll import evaluate_nll

    # the toy's audio tells the state by which mel bands are lit; the voice augmentation moves and
    # smears bands (tested on its own in test_prior_voice.py), which 60 steps do not learn through
    m = run(tokens, tmp_path, mode="mar", mar_layers=1, mar_dim=16, mar_heads=2, steps=60, checkpoint_every=60,
            log_every=20, prev_frame_dropout=0.0, **NO_VOICE_AUG)
    val = m["val"]
    assert val["nll_bits_per_code"] < 0.5 * val["unigram_entropy_bits"], val
    assert val["nll_shuffled_audio_bits_per_code"] > val["nll_bits_per_code"] + 0.5, val
    model, meta = load_prior(tmp_path / "ckpt" / "prior.pt", "cpu")
    assert model.dims.mode == "mar" and meta["dims"]["mar_dim"] == 16
    codes, mel = synth_clip(np.random.default_rng(9), 10)
    sampled = model.sample(torch.from_numpy(mel), 0, top_k=1, seed=0)
    assert sampled.shape == (10, 2, 2, 2) and (sampled.numpy() == codes).mean() > 0.8
    test = evaluate_nll(model, load_token_clips(token_paths(tokens, "val")), window=8)
    assert test["nll_bits_per_code"] == pytest.approx(val["nll_bits_per_code"], rel=1e-4)


def test_changed_code_weighting_moves_the_loss_to_codes_that_change():
    from nwt.train.prior import changed_weighted_ce

    torch.manual_seed(0)
    codes = torch.zeros(1, 3, 2, 2, 1, dtype=torch.long)
    codes[0, 2, 0, 0, 0] = 5  # one code changes, at frame 2
    logits = torch.zeros(1, 3, 2, 2, 1, 8)
    logits[..., 0] = 4.0  # confident "same as before": right for 11 codes, wrong for the changed one
    plain, same = changed_weighted_ce(logits, codes, 1.0)
    assert torch.equal(plain, same)
    plain10, weighted = changed_weighted_ce(logits, codes, 10.0)
    torch.testing.assert_close(plain10, plain)  # what gets logged does not move
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 8), codes.reshape(-1), reduction="none")
    expected = (ce.sum() + 9 * ce[8]) / (12 + 9)  # frame 2, position (0, 0) is flat index 8
    torch.testing.assert_close(weighted, expected)
    assert weighted > plain


def test_codebook_init_and_sync_loss_train_and_log(tmp_path):
    """prior.codebook_init reads data/tokens/codebook.npy (a clear error where the tokens carry
    none) and the sync loss is logged; the run still learns to listen."""
    tokens = write_tokens(tmp_path / "tokens", codebook=False)
    with pytest.raises(FileNotFoundError, match="dvc repro tokenize"):
        run(tokens, tmp_path / "a", steps=2, codebook_init=True)
    write_codebook(tokens, np.random.default_rng(0).normal(size=(2, NUM_CODES, 6)))
    m = run(tokens, tmp_path / "b", steps=150, checkpoint_every=150, log_every=25, prev_frame_dropout=0.0,
            codebook_init=True, sync_dim=8, sync_weight=0.5)
    val = m["val"]
    assert val["nll_shuffled_audio_bits_per_code"] > val["nll_bits_per_code"] + 0.5, val
    sync = np.loadtxt(tmp_path / "b" / "report" / "plots" / "metrics" / "train" / "sync_loss.tsv", skiprows=1)[:, 1]
    assert sync[-1] < sync[0]  # the frame of the audio is found more often as training goes on


def test_dvc_stage_depends_on_every_module_that_shapes_a_checkpoint():
    """A change to any module in the resume fingerprint must also make `dvc repro` rerun the stage."""
    from pathlib import Path

    import yaml

    from nwt.train.prior import CODE_MODULES
    root = Path(__file__).resolve().parents[2]
    deps = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train_prior"]["deps"])
    for module in CODE_MODULES:
        assert module.replace(".", "/") + ".py" in deps, module
    assert "nwt/data/tokens.py" in deps  # the codebook file's reader


def test_prior_dims_reads_the_params_section_and_gives_guidance_input_with_audio_dropout():
    from nwt.train.prior import prior_dims

    data = dict(grid_h=4, grid_w=3, code_heads=2, num_codes=16, n_episodes=3, n_mels=80)
    dims = prior_dims(tiny(layers=3, audio_dropout=0.1), **data)
    assert dims.layers == 3 and dims.null_audio and (dims.grid_h, dims.num_codes, dims.n_episodes) == (4, 16, 3)
    assert not prior_dims(tiny(audio_dropout=0.0), **data).null_audio


def test_no_val_clips_gives_nulls_a_reason_and_a_warning(tmp_path):
    """A corpus too small for a val block (issue 20): null figures + why, never NaN."""
    tokens = write_tokens(tmp_path / "tokens", dict(train=4))
    m = run(tokens, tmp_path, steps=2)
    assert m["val"]["nll_bits_per_code"] is None and "no val clips" in m["val"]["reason"]
    assert m["warnings"] == ["prior: no val NLL (no val clips), so whether it learned was not checked"]
    assert (tmp_path / "ckpt" / "prior.pt").exists()


def test_no_train_clips_says_what_is_needed(tmp_path):
    tokens = write_tokens(tmp_path / "tokens", dict(val=2))
    with pytest.raises(FileNotFoundError, match="at least one train clip"):
        run(tokens, tmp_path)
