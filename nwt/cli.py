"""The `nwt` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nwt import __version__
from nwt.constants import DVAE_MODEL, PRIOR_MODEL
from nwt.params import PARAMS_FILE, SamplingParams, load_params

# the sampling flags of `nwt generate` and their params.yaml keys (section evaluate)
SAMPLING_FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "guidance": "--guidance"}


def sampling_from(args: argparse.Namespace, params_file: Path = PARAMS_FILE) -> SamplingParams:
    """The flags given, the rest from `evaluate` in params.yaml (of the current directory: the
    checkout, where the default model paths point too); without params.yaml, the flags not
    given are an error that names them."""
    given = {key: getattr(args, key) for key in SAMPLING_FLAGS}
    missing = [key for key, value in given.items() if value is None]
    if missing:
        if not Path(params_file).is_file():
            flags = ", ".join(SAMPLING_FLAGS[k] for k in missing)
            raise ValueError(f"no {params_file} here ({Path.cwd()}) to take the sampling defaults from: "
                             f"pass {flags}, or run nwt generate in the nwt checkout")
        defaults = load_params(params_file).evaluate.sampling
        given.update({key: getattr(defaults, key) for key in missing})
    return SamplingParams(**given)


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nwt.generate import generate

    sampling = sampling_from(args)
    bar = None

    def start(frames: int) -> None:
        nonlocal bar
        bar = tqdm(total=frames, desc="nwt generate", unit="frame", dynamic_ncols=True)

    try:
        result = generate(args.audio, args.out, sampling, episode=args.episode, seed=args.seed,
                          guidance_asked=args.guidance is not None, dvae=args.dvae, prior=args.prior,
                          device=args.device, mark=not args.no_mark, style_seed=args.style_seed,
                          style_from=args.style_from, on_start=start, on_frames=lambda n: bar.update(n))
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {args.out}: {result.seconds:.1f} s of video in {result.wall_s:.1f} s "
          f"(real-time factor {result.rtf:.2f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nwt", description="Speech in, talking-presenter video out.")
    parser.add_argument("--version", action="version", version=f"nwt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser(
        "generate", help="generate a presenter video from speech audio",
        description="Generate an mp4 of the presenter speaking the given audio, with the audio muxed in, from the "
                    "models of the last `dvc repro` (models/dvae/dvae.pt, models/prior/prior.pt) or given paths, "
                    "sampled as params.yaml's evaluate section says unless flags say otherwise (run it in the "
                    "nwt checkout). "
                    "Audio of any length is generated frame by frame and streamed into the file in bounded memory. "
                    "Every output carries a provenance tag (generator, version, model fingerprints) in its metadata.")
    gen.add_argument("--audio", required=True, type=Path,
                     help="speech to animate: wav/flac/mp3/m4a or a video file (its first audio track); "
                          "any sample rate or channel count, resampled to the models' rate")
    gen.add_argument("--out", required=True, type=Path, help="output video path (.mp4: H.264 + AAC; .webm: VP9 + Opus)")
    gen.add_argument("--episode", default=None, metavar="ID",
                     help="episode id whose labelled look (outfit, hair, set) to use, for the prior and the decoder; "
                          "default: the <unk> look learned for unseen episodes")
    style = gen.add_mutually_exclusive_group()
    style.add_argument("--style-from", type=Path, default=None, metavar="REF.mp4",
                       help="take the unlabelled style (framing, zoom, overlays) from this reference video: its first "
                            "10 s are centre-cropped to 256:224, encoded by the dVAE and summarised by the prior's "
                            "reference encoder")
    style.add_argument("--style-seed", type=int, default=None, metavar="N",
                       help="draw the unlabelled style from N(0, I) with this seed; without --style-from or "
                            "--style-seed the style is the prior's mean (z = 0)")
    gen.add_argument("--temperature", type=float, default=None,
                     help="sampling temperature of the prior (0 = greedy; "
                          "default: evaluate.temperature in params.yaml)")
    gen.add_argument("--guidance", type=float, default=None, metavar="G",
                     help="classifier-free guidance by the audio: sample from uncond + G × (cond − uncond), the "
                          "prior's predictions without and with the audio; higher follows the speech more closely "
                          "(1 = off; "
                          "default: evaluate.guidance in params.yaml for a prior trained with prior.audio_dropout > 0, "
                          "else 1)")
    gen.add_argument("--top-k", type=int, default=None,
                     help="sample among the k most likely codes (0 = all; default: evaluate.top_k in params.yaml)")
    gen.add_argument("--top-p", type=float, default=None,
                     help="nucleus sampling mass (1 = off; default: evaluate.top_p in params.yaml)")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed and options give the same video")
    gen.add_argument("--dvae", type=Path, default=DVAE_MODEL,
                     help="dVAE checkpoint (default: the one `dvc repro` trained)")
    gen.add_argument("--prior", type=Path, default=PRIOR_MODEL,
                     help="prior checkpoint (default: the one `dvc repro` trained)")
    gen.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run the models (default cpu)")
    gen.add_argument("--no-mark", action="store_true",
                     help="leave out the visible 'SYNTHETIC' mark (the provenance metadata stays)")
    gen.set_defaults(func=_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"nwt {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
