"""nwt.generate with tiny randomly initialised models: streamed log-mel equals log_mel, bounded
memory for long audio, the streamed mp4 (audio, provenance, mark), style control, the CLI."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO

from nwt.constants import Timing
from nwt.generate import Generator, MelStream, centre_crop_resize, default_sampling, generate
from nwt.models.audio_features import log_mel
from nwt.models.dvae import DVAE, DVAEDims
from nwt.models.prior import Prior, PriorDims
from nwt.params import WHOLE_FRAME, SamplingParams

torch.set_num_threads(1)

SR = 16000
DVAE_TINY = dict(channels=8, max_mult=2, blocks=1, downsample=16, num_codes=16, heads=2, code_dim=16, temperature=1.0,
                 logit_scale=10.0, n_episodes=2, episode_dim=8, use_episode=True, stem=4, norm="group", height=64,
                 width=64)
PRIOR_TINY = dict(mode="far", layers=1, dim=32, heads=2, audio_layers=1, audio_window=2, context_frames=8, grid_h=4,
                  grid_w=4, code_heads=2, num_codes=16, n_episodes=2, n_mels=80, code_dim=4, spatial_dim=8,
                  logit_scale=4.0, sync_dim=0, audio_skip=0, style_dim=4, null_audio=False, style_hidden=16,
                  mar_layers=2, mar_dim=64, mar_heads=2)
EPISODES = ["ep0", "ep1"]


def sampling(temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, guidance: float = 1.0,
             guidance_box: tuple[float, ...] = WHOLE_FRAME) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance,
                          guidance_box=guidance_box)


SAMPLING = sampling()


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts at a syllable rate: loud enough not to be silent, varied enough to matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (rng.standard_normal(len(t)) * 0.1 * env).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    dvae = DVAE(DVAEDims(**DVAE_TINY))
    torch.save(dict(dims=dvae.dims.to_dict(), state_dict=dvae.state_dict(), episode_ids=EPISODES, unseen_ids=[],
                    timing=dict(fps=25, sample_rate=SR), fingerprint="dvae-test", step=0), root / "dvae.pt")
    prior = Prior(PriorDims(**PRIOR_TINY))
    torch.save(dict(dims=prior.dims.to_dict(), state_dict=prior.state_dict(), episode_ids=EPISODES,
                    timing=dict(fps=25, sample_rate=SR), fingerprint="prior-test", step=0), root / "prior.pt")
    return root / "dvae.pt", root / "prior.pt"


def test_mel_stream_equals_log_mel():
    timing = Timing(25, 16000)
    audio = speech(3.3)
    audio[: SR // 2] *= 40  # a loud start: the 8-decade floor comes from the global peak
    audio = audio[: len(audio) // 640 * 640]
    full = log_mel(audio, timing)
    stream = MelStream(audio, timing, chunk_frames=7)
    assert stream.n_frames == len(audio) // 640
    for lo, hi in ((0, 5), (3, 40), (70, stream.n_frames), (0, stream.n_frames)):
        assert torch.allclose(stream(lo, hi), full[4 * lo : 4 * hi], atol=1e-5), (lo, hi)


def test_stream_equals_from_audio_and_is_deterministic(models):
    gen = Generator(*models)
    audio = speech(1.0)
    a = gen.from_audio(audio, "ep0", sampling=sampling(1.0), seed=3)
    assert a.frames.shape == (25, 64, 64, 3) and a.frames.dtype == np.uint8 and a.codes.shape == (25, 4, 4, 2)
    chunks = list(gen.stream(audio, "ep0", sampling=sampling(1.0), seed=3, decode_chunk=4))
    assert [len(f) for _, f in chunks] == [4] * 6 + [1]
    assert np.array_equal(np.concatenate([c for c, _ in chunks]), a.codes)
    assert np.array_equal(np.concatenate([f for _, f in chunks]), a.frames)
    b = gen.from_audio(audio, "ep0", sampling=sampling(1.0), seed=4)
    assert not np.array_equal(a.codes, b.codes)
    # the prior's sampler on the whole mel gives the same codes as the streamed one
    mel = log_mel(audio, gen.timing)
    whole = gen.prior.sample(mel, 0, temperature=1.0, seed=3)
    assert np.array_equal(whole.numpy().astype(np.uint16), a.codes)


def test_bad_audio_errors(models):
    gen = Generator(*models)
    with pytest.raises(ValueError, match="silent"):
        gen.from_audio(np.zeros(SR, np.float32), sampling=SAMPLING)
    with pytest.raises(ValueError, match="long"):
        gen.from_audio(speech(0.1), sampling=SAMPLING)
    with pytest.raises(ValueError, match="unknown episode"):
        gen.from_audio(speech(1.0), "nope", sampling=SAMPLING)


MEM_SCRIPT = r"""
import sys, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[4])
from test_generate import speech
from nwt.generate import Generator
from nwt.params import WHOLE_FRAME, SamplingParams
gen = Generator(sys.argv[1], sys.argv[2])
sampling = SamplingParams(temperature=0.8, top_k=0, top_p=1.0, guidance=1.0, guidance_box=WHOLE_FRAME)
audio = speech(float(sys.argv[3]))
for _ in gen.stream(speech(1.0), sampling=sampling):  # warm-up: lazy inits, allocator pools
    pass
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident set size
base = status("VmRSS")
n = 0
for codes, frames in gen.stream(audio, sampling=sampling):
    n += len(frames)
print(n, status("VmHWM") - base)
"""


def _peak_kb(models, seconds, here) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", MEM_SCRIPT, str(models[0]), str(models[1]), str(seconds), str(here)],
                         capture_output=True, text=True, check=True)
    n, kb = out.stdout.split()
    return int(n), int(kb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset needs Linux /proc")
def test_peak_memory_of_2_minutes_is_that_of_20_seconds(models, request):
    """Peak resident memory of generation (above the loaded models and the input audio) for
    120 s of audio stays within 1.5× of that for 20 s: nothing grows with the length but the
    uint16 codes. (Holding the frames would make it ≈ 6×: 3000 × 12 kB vs 500 × 12 kB.)"""
    here = request.path.parent
    n20, kb20 = _peak_kb(models, 20, here)
    n120, kb120 = _peak_kb(models, 120, here)
    assert (n20, n120) == (500, 3000)
    print(f"peak above baseline: 20 s {kb20} kB, 120 s {kb120} kB")
    assert kb120 <= 1.5 * max(kb20, 4096), (kb20, kb120)  # 4 MB floor: allocator noise on tiny figures


def test_write_stream_mp4_audio_provenance_mark(models, tmp_path):
    gen = Generator(*models)
    audio = speech(2.0)
    wav = tmp_path / "speech.wav"
    import soundfile

    soundfile.write(wav, audio, SR)
    frames_done = []
    out = tmp_path / "video.mp4"
    started = []
    result = generate(wav, out, SAMPLING, episode="ep1", dvae=models[0], prior=models[1], style_seed=5,
                      on_start=started.append, on_frames=frames_done.append)
    assert result.frames is None and result.codes.shape == (50, 4, 4, 2)
    assert started == [50] and sum(frames_done) == 50
    from nwt.data.media import iter_frames, probe

    info = probe(out)
    assert info.has_video and info.has_audio and (info.width, info.height) == (64, 64)
    assert 1.8 < info.duration_s < 2.3
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=comment", "-of", "csv=p=0",
                           str(out)], capture_output=True, text=True).stdout
    assert "generated by nwt" in tags and "prior-test" in tags
    assert not list(tmp_path.glob(".video.*"))  # no temp file left behind
    # same seeds → same codes as the in-memory path; mark off → different pixels in the corner
    again = gen.from_audio(audio, "ep1", sampling=SAMPLING, style=gen.style_vector(style_seed=5))
    assert np.array_equal(again.codes, result.codes)
    plain = tmp_path / "plain.mp4"
    gen.write_stream(audio, plain, "ep1", sampling=SAMPLING, mark=False, style=gen.style_vector(style_seed=5))
    marked_f = next(iter_frames(out, 25)).astype(int)
    plain_f = next(iter_frames(plain, 25)).astype(int)
    assert np.abs(marked_f - plain_f).max() > 50  # the white "SYNTHETIC" text


def test_style_control(models, tmp_path):
    gen = Generator(*models)
    audio = speech(1.0)
    z1, z2 = gen.style_vector(style_seed=1), gen.style_vector(style_seed=2)
    assert z1.shape == (4,) and torch.equal(z1, gen.style_vector(style_seed=1)) and not torch.equal(z1, z2)
    a = gen.from_audio(audio, "ep0", sampling=sampling(0), style=z1 * 30)
    b = gen.from_audio(audio, "ep0", sampling=sampling(0), style=z2 * 30)
    assert not np.array_equal(a.codes, b.codes)  # the style latent reaches the codes
    with pytest.raises(ValueError, match="either"):
        gen.style_vector(style_seed=1, style_from="x.mp4")
    # a reference video (not at the crop's size or aspect): its codes' style mean
    ref = tmp_path / "ref.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=96x80:rate=25:duration=1",
                    "-pix_fmt", "yuv420p", str(ref)], check=True)
    z = gen.style_vector(style_from=ref)
    assert z.shape == (4,) and torch.isfinite(z).all()
    assert gen.reference_codes(ref).shape == (25, 4, 4, 2)


def test_centre_crop_resize():
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, 100:200] = 255  # the centre
    out = centre_crop_resize(wide, 256, 224)
    assert out.shape == (256, 224, 3) and out.mean() > 200
    same = np.random.default_rng(0).integers(0, 255, (256, 224, 3), dtype=np.uint8)
    assert np.array_equal(centre_crop_resize(same), same)


def test_no_style_latent_errors(tmp_path, models):
    prior = Prior(PriorDims(**{**PRIOR_TINY, "style_dim": 0}))
    path = tmp_path / "prior0.pt"
    torch.save(dict(dims=prior.dims.to_dict(), state_dict=prior.state_dict(), episode_ids=EPISODES,
                    timing=dict(fps=25, sample_rate=SR), fingerprint="p0", step=0), path)
    gen = Generator(models[0], path)
    assert gen.style_vector() is None
    with pytest.raises(ValueError, match="style_dim"):
        gen.style_vector(style_seed=1)
    assert gen.from_audio(speech(0.5), sampling=SAMPLING).frames.shape == (12, 64, 64, 3)


EXPLICIT = ["--temperature", "0.5", "--top-k", "0", "--top-p", "1", "--guidance", "1"]


def test_cli_help_and_generate(models, tmp_path):
    from nwt.cli import build_parser, main

    sub = build_parser()._subparsers._group_actions[0].choices["generate"]
    helps = {a.dest: a.help for a in sub._actions}
    for opt in ("audio", "out", "episode", "style_from", "style_seed", "temperature", "guidance", "top_k", "top_p",
                "seed", "device", "no_mark", "dvae", "prior"):
        assert helps.get(opt), opt
    for opt in ("temperature", "guidance", "top_k", "top_p"):  # where the default comes from, no value of its own
        assert f"evaluate.{opt} in params.yaml" in helps[opt], opt
    import soundfile

    wav = tmp_path / "s.wav"
    soundfile.write(wav, speech(1.0), SR)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--audio", str(wav), "--out", str(out), "--episode", "ep0", "--style-seed", "3",
                 *EXPLICIT, "--dvae", str(models[0]), "--prior", str(models[1]), "--no-mark"]) == 0
    assert out.is_file()
    assert main(["generate", "--audio", str(wav), "--out", str(out), "--episode", "zz", *EXPLICIT,
                 "--dvae", str(models[0]), "--prior", str(models[1])]) == 2


def test_cli_sampling_defaults_come_from_params_yaml(tmp_path, monkeypatch, capsys):
    """Flags not given come from a model bundle's defaults or, for checkpoints, from params.yaml's
    evaluate section (in the current directory); with checkpoints and no params.yaml the error
    names the flags to pass."""
    from nwt.cli import build_parser, main, sampling_from
    from nwt.params import load_params

    parse = build_parser().parse_args
    base = ["generate", "--audio", "a.wav", "--out", "o.mp4"]
    monkeypatch.chdir(REPO)
    expected = default_sampling(load_params())  # the checkout's params.yaml
    assert sampling_from(parse(base)) == expected
    assert sampling_from(parse([*base, "--top-k", "7"])) == SamplingParams(expected.temperature, 7, expected.top_p,
                                                                           expected.guidance, expected.guidance_box)
    assert sampling_from(parse([*base, *EXPLICIT]), tmp_path / "none.yaml") == sampling(0.5, 0, 1.0, 1.0)
    bundled = sampling(0.6, 5, 0.9, 2.0)  # a bundle's defaults: no params.yaml needed
    assert sampling_from(parse(base), tmp_path / "none.yaml", defaults=bundled) == bundled
    assert sampling_from(parse([*base, "--top-k", "7"]), defaults=bundled) == sampling(0.6, 7, 0.9, 2.0)
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert main([*base, "--temperature", "0.5", "--dvae", "d.pt", "--prior", "p.pt"]) == 2
    err = capsys.readouterr().err
    assert "params.yaml" in err and "pass --top-k, --top-p, --guidance," in err


def test_cli_guidance_default_follows_the_prior(models, tmp_path, monkeypatch):
    """Without --guidance the CLI gives params' guidance only as a default (a prior without a
    'no audio' input then samples with 1); with --guidance it is asked for explicitly."""
    import nwt.cli
    import nwt.generate
    from nwt.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("")
    monkeypatch.setattr(nwt.cli, "load_params", lambda path: SimpleNamespace())
    monkeypatch.setattr(nwt.generate, "default_sampling", lambda params: sampling(0.7, 3, 0.9, 4.0))
    calls = []
    real = nwt.generate.generate
    monkeypatch.setattr(nwt.generate, "generate", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    import soundfile

    wav = tmp_path / "s.wav"
    soundfile.write(wav, speech(1.0), SR)
    args = ["generate", "--audio", str(wav), "--out", str(tmp_path / "o.mp4"), "--dvae", str(models[0]),
            "--prior", str(models[1])]
    assert main(args) == 0  # a plain prior: params' guidance 4 is only the default, so 1
    (_, _, asked), kw = calls[-1]
    assert asked == sampling(0.7, 3, 0.9, 4.0) and kw["guidance_asked"] is False
    assert main([*args, "--guidance", "3"]) == 2  # asked explicitly of a prior that cannot be guided
    assert calls[-1][1]["guidance_asked"] is True


def test_guidance_default_follows_the_prior(models, tmp_path):
    """Params' guidance, when it is only the default (not asked for explicitly), guides a prior
    with a learned 'no audio' input and becomes 1 for one without; asked for explicitly, a prior
    without one refuses it. The CLI passes --guidance through."""
    from nwt.cli import main

    torch.manual_seed(2)
    prior = Prior(PriorDims(**{**PRIOR_TINY, "null_audio": True, "audio_skip": 4}))
    torch.nn.init.normal_(prior.audio_skip[1].weight, std=0.5)  # zero at init: let the audio matter
    torch.nn.init.normal_(prior.null_audio, std=1.0)
    path = tmp_path / "guided.pt"
    torch.save(dict(dims=prior.dims.to_dict(), state_dict=prior.state_dict(), episode_ids=EPISODES,
                    timing=dict(fps=25, sample_rate=SR), fingerprint="pg", step=0), path)
    guided, plain = Generator(models[0], path), Generator(*models)
    configured = sampling(0.5, guidance=5.0)
    assert guided.sampling_for(configured, guidance_asked=False) == configured
    assert plain.sampling_for(configured, guidance_asked=False) == sampling(0.5, guidance=1.0)
    assert plain.sampling_for(configured) == configured
    audio = speech(1.0)
    default = guided.from_audio(audio, "ep0", sampling=guided.sampling_for(configured, False), seed=1).codes
    assert np.array_equal(default, guided.from_audio(audio, "ep0", sampling=configured, seed=1).codes)
    assert not np.array_equal(default, guided.from_audio(audio, "ep0", sampling=sampling(0.5), seed=1).codes)
    with pytest.raises(ValueError, match="audio_dropout"):
        plain.from_audio(audio, "ep0", sampling=plain.sampling_for(sampling(guidance=3.0)))
    import soundfile

    wav = tmp_path / "s.wav"
    soundfile.write(wav, audio, SR)
    out = tmp_path / "g.mp4"
    assert main(["generate", "--audio", str(wav), "--out", str(out), "--temperature", "0.8", "--top-k", "0",
                 "--top-p", "1", "--guidance", "2", "--dvae", str(models[0]), "--prior", str(path)]) == 0
    assert out.is_file()


def test_episode_control_runs_on_a_generator(models):
    from nwt.eval.control import episode_control, region_stats

    gen = Generator(*models)
    refs = {"ep0": region_stats(np.full((1, 64, 64, 3), 40, np.uint8)),
            "ep1": region_stats(np.full((1, 64, 64, 3), 220, np.uint8))}
    out = episode_control(gen, [speech(0.4)], refs, sampling(0.5), seed=0)
    assert out["generations"] == 2 and 0.0 <= out["accuracy"] <= 1.0


def test_generate_with_a_mar_prior(models, tmp_path):
    """A MAR checkpoint goes through nwt generate unchanged: streamed mp4, same seed → same codes."""
    torch.manual_seed(1)
    prior = Prior(PriorDims(**{**PRIOR_TINY, "mode": "mar", "mar_layers": 1, "mar_dim": 8, "mar_heads": 2}))
    path = tmp_path / "prior_mar.pt"
    torch.save(dict(dims=prior.dims.to_dict(), state_dict=prior.state_dict(), episode_ids=EPISODES,
                    timing=dict(fps=25, sample_rate=SR), fingerprint="prior-mar", step=0), path)
    import soundfile

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech(1.0), SR)
    result = generate(wav, tmp_path / "mar.mp4", SAMPLING, episode="ep0", dvae=models[0], prior=path, style_seed=2,
                      seed=7)
    assert result.codes.shape == (25, 4, 4, 2) and (tmp_path / "mar.mp4").stat().st_size > 0
    gen = Generator(models[0], path)
    assert gen.prior.dims.mode == "mar"
    again = gen.from_audio(speech(1.0), "ep0", sampling=SAMPLING, seed=7, style=gen.style_vector(style_seed=2))
    assert np.array_equal(again.codes, result.codes) and again.frames.shape == (25, 64, 64, 3)


@pytest.fixture(scope="module")
def two_look_models(models):
    """The tiny dVAE and a tiny prior trained (a few seconds) on still clips of two looks, A and B,
    under one episode: it has learnt to copy the previous frame, and its first frame, drawn from
    the learned start alone, is A or B by chance. A's codes are the dVAE's codes of a real image,
    which serves as the episode's reference frame."""
    gen = Generator(*models)
    rng = np.random.default_rng(0)
    reference = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1)  # (64, 64, 3)
    look_a = torch.from_numpy(gen.encode_reference(reference).astype(np.int64))
    look_b = (look_a + 1 + torch.randint(0, 15, look_a.shape, generator=torch.Generator().manual_seed(0))) % 16
    torch.manual_seed(0)
    prior = Prior(PriorDims(**{**PRIOR_TINY, "style_dim": 0}))
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    looks = torch.stack([look_a, look_b])
    for _step in range(150):
        codes = looks[torch.arange(8) % 2][:, None].expand(8, 6, *look_a.shape)  # (8, 6, 4, 4, 2): still clips
        loss = prior.loss(prior(codes, torch.randn(8, 24, 80), torch.zeros(8, dtype=torch.long)), codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    prior.eval()
    return gen, prior, reference, look_a, look_b


def test_priming_starts_on_the_primer_look_and_drops_the_primer(two_look_models):
    _, prior, _, look_a, look_b = two_look_models
    mel = torch.randn(40, 80)  # 10 frames
    for look in (look_a, look_b):
        for temperature in (0.0, 0.8):
            codes = prior.sample(mel, 0, temperature=temperature, seed=1, prime=look)
            assert codes.shape == (10, 4, 4, 2)  # the primer is not part of the output
            assert (codes == look).float().mean() > 0.95, "a primed still clip must stay the primer's look"
    # unprimed, frame 0 is the prior's own draw: over seeds it opens on the other look too
    firsts = [prior.sample(mel, 0, temperature=1.0, seed=s)[0] for s in range(8)]
    assert any((f == look_b).float().mean() > 0.5 for f in firsts), "the unprimed prior should open on B at times"
    with pytest.raises(ValueError, match="primer codes"):
        prior.sample(mel, 0, prime=look_a[:2])
    with pytest.raises(ValueError, match="must lie in"):
        prior.sample(mel, 0, prime=look_a + 16)


def test_first_frame_is_the_requested_episodes_look(two_look_models):
    gen, prior, reference, look_a, _ = two_look_models
    primed = Generator.from_models(gen.dvae, gen.dvae_meta, prior, gen.prior_meta, references={"ep0": reference})
    assert np.array_equal(primed.primer_codes("ep0"), look_a.numpy())
    assert primed.primer_codes("ep1") is None and primed.primer_codes(None) is None  # no reference, <unk>
    from nwt.models.dvae_io import decode_codes

    want = decode_codes(gen.dvae, look_a.numpy()[None], gen.dvae_meta_episode_index("ep0"))[0]  # as the dVAE shows it
    for seed in range(4):
        out = primed.from_audio(speech(0.4), "ep0", sampling=SAMPLING, seed=seed)
        assert out.frames.shape == (10, 64, 64, 3)
        assert np.array_equal(out.codes[0], look_a.numpy()) and np.array_equal(out.frames[0], want)
    unprimed = [primed.from_audio(speech(0.4), "ep0", sampling=sampling(1.0), seed=s, prime=False).codes[0]
                for s in range(8)]
    assert any(not np.array_equal(c, look_a.numpy()) for c in unprimed)
    bad = Generator.from_models(gen.dvae, gen.dvae_meta, prior, gen.prior_meta, references={"ep0": reference[..., 0]})
    with pytest.raises(ValueError, match="reference frame of 'ep0'"):
        bad.from_audio(speech(0.4), "ep0", sampling=SAMPLING)


def test_guidance_map_covers_the_cells_the_box_touches():
    from types import SimpleNamespace

    from nwt.generate import guidance_map

    dims = SimpleNamespace(grid_h=16, grid_w=14)
    assert guidance_map(WHOLE_FRAME, dims) is None  # everywhere: the scalar guidance
    m = guidance_map((0.375, 0.75, 0.25, 0.75), dims)  # the default sync mouth box
    rows, cols = np.nonzero(m.numpy())
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 11, 3, 10)
    assert float(m.sum()) == 6 * 8 and set(np.unique(m.numpy())) == {0.0, 1.0}
    with pytest.raises(ValueError, match="not a box"):
        guidance_map((0.5, 0.4, 0.0, 1.0), dims)
