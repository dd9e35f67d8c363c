"""The `nwt` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nwt import __version__


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nwt.generate import Generator, load_audio_file

    steps = tqdm(total=3, desc="nwt generate", unit="step")
    steps.set_postfix_str("loading models")
    gen = Generator(args.dvae, args.prior, args.device)
    steps.update()
    steps.set_postfix_str("sampling + decoding")
    audio = load_audio_file(args.audio, gen.timing.sample_rate)
    result = gen.from_audio(audio, args.episode, args.temperature, args.top_k, args.top_p, args.seed)
    steps.update()
    steps.set_postfix_str("writing mp4")
    gen.write(result, args.out, mark=not args.no_mark)
    steps.update()
    steps.close()
    print(f"wrote {args.out}: {result.seconds:.1f} s of video in {result.wall_s:.1f} s (real-time factor {result.rtf:.2f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nwt", description="Speech in, talking-presenter video out.")
    parser.add_argument("--version", action="version", version=f"nwt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser("generate", help="generate a presenter video from speech audio",
                         description="Generate an mp4 of the presenter speaking the given audio, with the audio "
                                     "muxed in, from the models of the last `dvc repro` (or given paths).")
    gen.add_argument("--audio", required=True, type=Path,
                     help="speech to animate: wav/flac/mp3/m4a or a video file (its first audio track); "
                          "any sample rate or channel count")
    gen.add_argument("--out", required=True, type=Path, help="output .mp4 path")
    gen.add_argument("--episode", default=None,
                     help="episode id whose look (outfit, hair, set) to use; default: the <unk> look")
    gen.add_argument("--temperature", type=float, default=0.8,
                     help="sampling temperature of the prior (0 = greedy; default 0.8)")
    gen.add_argument("--top-k", type=int, default=0, help="sample among the k most likely codes (0 = all)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    gen.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same video")
    gen.add_argument("--dvae", type=Path, default=Path("models/dvae/dvae.pt"), help="dVAE checkpoint")
    gen.add_argument("--prior", type=Path, default=Path("models/prior/prior.pt"), help="prior checkpoint")
    gen.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run the models")
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
