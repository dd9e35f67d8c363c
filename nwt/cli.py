"""The `nwt` command: `generate` (speech → video, one file or many), `export` (a model bundle),
`models` (the local model store) and `serve` (a local web page)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nwt import __version__
from nwt.constants import DVAE_MODEL, PRIOR_MODEL
from nwt.params import PARAMS_FILE, WHOLE_FRAME, SamplingParams, guidance_where, load_params

# the sampling flags of `nwt generate` and their params.yaml keys (section evaluate)
SAMPLING_FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "guidance": "--guidance"}


class _Formatter(argparse.HelpFormatter):
    """Descriptions wrapped as usual; an epilog of examples kept line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def sampling_from(args: argparse.Namespace, params_file: Path = PARAMS_FILE,
                  defaults: SamplingParams | None = None) -> SamplingParams:
    """The flags given, the rest from `defaults` (a model bundle's) or else from `evaluate` in
    params.yaml (of the current directory: the checkout, where the checkpoints of the last
    `dvc repro` are too); without either, the flags not given are an error that names them."""
    given = {key: getattr(args, key) for key in SAMPLING_FLAGS}
    missing = [key for key, value in given.items() if value is None]
    if defaults is None and Path(params_file).is_file():
        from nwt.generate import default_sampling

        defaults = default_sampling(load_params(params_file))
    if missing and defaults is None:
        flags = ", ".join(SAMPLING_FLAGS[k] for k in missing)
        raise ValueError(f"no {params_file} here ({Path.cwd()}) to take the sampling defaults from: "
                         f"pass {flags}, or run nwt generate in the nwt checkout, or use a model bundle (--model)")
    given.update({key: getattr(defaults, key) for key in missing})
    # where guidance acts is no flag: the bundle's or params.yaml's (the models' framing); with
    # neither (checkpoints outside a checkout, every flag given) that framing is unknown: everywhere
    return SamplingParams(**given, guidance_box=defaults.guidance_box if defaults is not None else WHOLE_FRAME)


def generation_jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(audio, video) pairs: one `--audio` to `--out`, or every audio (`--audio` files, then the
    lines of `--audio-list`) to `--out-dir/<stem>.<format>`. A wrong combination is a ValueError."""
    audios = list(args.audio or [])
    if args.audio_list is not None:
        if not args.audio_list.is_file():
            raise ValueError(f"--audio-list {args.audio_list} does not exist")
        lines = (line.strip() for line in args.audio_list.read_text().splitlines())
        audios += [Path(line) for line in lines if line and not line.startswith("#")]
    if not audios:
        raise ValueError("no audio: give --audio FILE [FILE ...] or --audio-list LIST")
    if (args.out is None) == (args.out_dir is None):
        raise ValueError("give --out FILE (one audio) or --out-dir DIR (one video per audio), one of the two")
    if args.out is not None:
        if len(audios) > 1 or args.format is not None:
            raise ValueError("--out names one video: for several audios (or --format) give --out-dir DIR")
        return [(audios[0], args.out)]
    outs = [args.out_dir / f"{a.stem}.{args.format or 'mp4'}" for a in audios]
    clashes = sorted({str(o) for o in outs if outs.count(o) > 1})
    if clashes:
        raise ValueError(f"several audios would be written to {', '.join(clashes)} (same file stem): rename one")
    return list(zip(audios, outs))


def _load_generator(args: argparse.Namespace):
    """(Generator, sampling) of the model the resolution order picks (nwt.store.resolve)."""
    from nwt.store import resolve

    choice = resolve(args.model, args.dvae, args.prior)
    print(f"nwt generate: model {choice.describe()}", file=sys.stderr)
    # checkpoints: the flags' defaults come from params.yaml, checked before the models load
    sampling = sampling_from(args) if choice.bundle is None else None
    gen, bundle = choice.generator(args.device)
    return gen, sampling if bundle is None else sampling_from(args, defaults=bundle.sampling)


class _Progress:
    """A tqdm bar for one video, made once the number of frames is known."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def start(self, frames: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=frames, desc=self.desc, unit="frame", dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _generate(args: argparse.Namespace) -> int:
    import nwt.generate

    jobs = generation_jobs(args)
    gen, sampling = _load_generator(args)
    gen.episode_index(args.episode)  # an unknown episode stops here, before any file
    style = gen.style_vector(args.style_seed, args.style_from)
    batch, failed = args.out_dir is not None, []
    for audio, out in jobs:
        progress = _Progress(f"nwt generate {audio.name}" if batch else "nwt generate")
        try:
            result = nwt.generate.generate(
                audio, out, sampling, episode=args.episode, seed=args.seed, guidance_asked=args.guidance is not None,
                device=args.device, mark=not args.no_mark, generator=gen, style=style, on_start=progress.start,
                on_frames=progress.update)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            if not batch:
                raise
            print(f"nwt generate: skipped {audio}: {exc}", file=sys.stderr)
            failed.append(str(audio))
            continue
        finally:
            progress.close()
        print(f"wrote {out}: {result.seconds:.1f} s of video in {result.wall_s:.1f} s "
              f"(real-time factor {result.rtf:.2f})")
    if batch:
        print(f"wrote {len(jobs) - len(failed)} of {len(jobs)} videos to {args.out_dir}"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    import os

    from nwt import store
    from nwt.bundle import build_bundle, write_bundle

    if args.out is None and args.name is None:
        raise ValueError("give --out PATH (a bundle file) and/or --name NAME (into the model store)")
    if args.default and args.name is None:
        raise ValueError("--default makes the model given by --name the store's default: give --name")
    targets = ([args.out] if args.out is not None else []) + ([store.path_of(args.name)] if args.name else [])
    if not Path(args.params).is_file():
        raise FileNotFoundError(f"no {args.params} here ({Path.cwd()}) to take the sampling defaults and params "
                                "from: run nwt export in the nwt checkout, or pass --params")
    if not Path(args.shards).is_dir():
        print(f"nwt export: no {args.shards} here: the bundle holds no reference frames", file=sys.stderr)
    source = os.path.commonpath([Path(args.dvae).resolve(), Path(args.prior).resolve()])
    payload = build_bundle(args.dvae, args.prior, load_params(args.params), source=source, shards=args.shards)
    for target in targets:
        replaced = target.is_file()
        write_bundle(target, payload)
        print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB{', replacing the one there' if replaced else ''})")
    if args.default:
        store.set_default(args.name)
    if args.name:
        print(f"model {args.name!r} is in the store{' (the default)' if store.default_name() == args.name else ''}: "
              f"nwt generate --model {args.name} --audio speech.wav --out video.mp4")
    return 0


def _models(args: argparse.Namespace) -> int:
    from nwt import store

    if args.looks is not None and args.info is None:
        raise ValueError("--looks writes the reference frames of the bundle given by --info NAME_OR_PATH")
    if args.default:
        store.set_default(args.default)
        print(f"default model: {args.default}")
    elif args.remove:
        store.remove(args.remove)
        print(f"removed {args.remove} from {store.models_dir()}")
    elif args.info:
        _model_info(args.info, args.looks)
    else:
        _list_models()
    return 0


def _list_models() -> None:
    from nwt import store

    entries = store.entries()
    if not entries:
        print(f"no models in {store.models_dir()} (${store.HOME_ENV}); `nwt export --name NAME` in the nwt "
              "checkout puts one there")
    else:
        width = max(4, *(len(e.name) for e in entries))
        print(f"models in {store.models_dir()} (* = default):")
        print(f"  {'NAME':{width}}  {'SIZE':>10}  {'CREATED (UTC)':16}  SOURCE")
        for e in entries:
            created = e.created[:16].replace("T", " ")
            print(f"{'*' if e.default else ' '} {e.name:{width}}  {e.size / 1e6:7.1f} MB  {created:16}  {e.source}")
    try:
        print(f"nwt generate here uses: {store.resolve().describe()}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"nwt generate here has no model: {str(exc).splitlines()[0]}")


def _serve(args: argparse.Namespace) -> int:
    from nwt.serve import serve

    return serve(args.model, args.host, args.port, args.max_upload_mb, args.max_seconds, args.device)


def _model_info(spec: str, looks: Path | None) -> None:
    from nwt.bundle import contact_sheet, load_bundle
    from nwt.store import named

    path = named(spec, "--info").bundle
    bundle = load_bundle(path, mmap=looks is None)
    p, s, t = bundle.provenance, bundle.sampling, bundle.timing
    print(f"bundle {path} ({path.stat().st_size / 1e6:.1f} MB, format {bundle.payload['format_version']})")
    print(f"created {p.get('created')} by nwt {p.get('nwt_version')} from {p.get('source')}")
    print(f"dvae {p.get('dvae_fingerprint')}, prior {p.get('prior_fingerprint')}, params {p.get('params_hash')}")
    print(f"timing: {t.fps} fps, {t.sample_rate} Hz")
    print(f"sampling defaults: temperature {s.temperature}, top-k {s.top_k}, top-p {s.top_p}, guidance {s.guidance} "
          f"({guidance_where(s.guidance_box)})")
    print(f"episodes (--episode ID): {', '.join(bundle.episode_ids) or '-'}")
    print(f"  held out in training (the <unk> look): {', '.join(bundle.unseen_ids) or '-'}")
    n_refs = len(bundle.payload["episodes"]["reference_ids"])
    print(f"reference frames: {n_refs}" + ("" if looks or not n_refs else " (--looks SHEET.png shows them)"))
    if looks is not None:
        import cv2

        from nwt.atomic import atomic_path

        with atomic_path(looks) as tmp:
            if not cv2.imwrite(str(tmp), contact_sheet(bundle)[..., ::-1]):
                raise ValueError(f"cannot write {looks} (a .png or .jpg path)")
        print(f"wrote {looks}")


GENERATE_EXAMPLES = """examples:
  nwt generate --audio speech.wav --out video.mp4
  nwt generate --audio talk.m4a --out talk.webm --model mine --episode synth-001 --seed 3
  nwt generate --audio a.wav b.wav c.mp3 --out-dir videos/      # videos/a.mp4, b.mp4, c.mp4
  nwt generate --audio-list talks.txt --out-dir videos/ --format webm
"""
EXPORT_EXAMPLES = """examples:
  dvc repro && nwt export --name mine          # into the store: nwt generate --model mine, from any folder
  nwt export --out presenter.pt                # one file to copy elsewhere: nwt generate --model presenter.pt
  nwt export --dvae run2/dvae.pt --prior run2/prior.pt --name run2 --default
"""
MODELS_EXAMPLES = """examples:
  nwt models                                   # the store's models, the default marked *
  nwt models --default mine
  nwt models --info mine --looks looks.png     # episodes, sampling defaults, provenance; each episode's look
"""
SERVE_EXAMPLES = """examples:
  nwt serve                                    # http://127.0.0.1:7860/ with the model nwt generate would use
  nwt serve --model mine --port 8080
  nwt serve --max-upload-mb 20 --max-seconds 60 --device cuda
"""
RESOLUTION = ("The model is, first match wins: --model NAME_OR_PATH (or the checkpoints --dvae/--prior); "
              "$NWT_MODEL; the checkout you stand in (models/dvae/dvae.pt + models/prior/prior.pt of the last "
              "`dvc repro`, with params.yaml's sampling defaults, else its exported models/bundle/nwt.pt); "
              "the default (or only) model of the store $NWT_HOME/models (default ~/.cache/nwt/models).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nwt", description="Speech in, talking-presenter video out.",
                                     formatter_class=_Formatter, epilog=(
                                         "examples:\n  nwt generate --audio speech.wav --out video.mp4\n"
                                         "  nwt export --name mine\n  nwt models\n  nwt serve\n"))
    parser.add_argument("--version", action="version", version=f"nwt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate(sub)
    _add_export(sub)
    _add_models(sub)
    _add_serve(sub)
    return parser


def _add_generate(sub) -> None:
    gen = sub.add_parser(
        "generate", help="generate presenter videos from speech audio", formatter_class=_Formatter,
        epilog=GENERATE_EXAMPLES,
        description="Generate an mp4 of the presenter speaking the given audio, with the audio muxed in. "
                    + RESOLUTION + " Sampling follows the model bundle's defaults (for checkpoints: params.yaml's "
                    "evaluate section) unless flags say otherwise. Several audios (--out-dir) load the model once; "
                    "a file that fails is reported and skipped, and the exit status is 1 when any failed. "
                    "Audio of any length is generated frame by frame and streamed into the file in bounded memory. "
                    "Every output carries a provenance tag (generator, version, model fingerprints) in its metadata.")
    gen.add_argument("--audio", nargs="+", type=Path, default=None, metavar="FILE",
                     help="speech to animate: wav/flac/mp3/m4a or a video file (its first audio track); "
                          "any sample rate or channel count, resampled to the models' rate; "
                          "several files with --out-dir")
    gen.add_argument("--audio-list", type=Path, default=None, metavar="LIST",
                     help="a text file of audio paths, one per line (relative to the current folder; blank lines "
                          "and lines starting with # skipped), after any --audio files; needs --out-dir")
    gen.add_argument("--out", type=Path, default=None, help="output video path (.mp4: H.264 + AAC; .webm: VP9 + Opus)")
    gen.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                     help="write one video per audio, DIR/<audio file stem>.<format>")
    gen.add_argument("--format", choices=["mp4", "webm"], default=None,
                     help="container of the --out-dir videos (default mp4)")
    gen.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                     help="a model bundle: a name in the store (`nwt models`) or a file written by `nwt export` "
                          "(default: $NWT_MODEL, this checkout's models, the store's default; see above)")
    gen.add_argument("--episode", default=None, metavar="ID",
                     help="episode id whose labelled look (outfit, hair, set) to use, for the prior and the decoder; "
                          "default: the <unk> look learned for unseen episodes (`nwt models --info` lists the ids)")
    style = gen.add_mutually_exclusive_group()
    style.add_argument("--style-from", type=Path, default=None, metavar="REF.mp4",
                       help="take the unlabelled style (framing, zoom, overlays) from this reference video: its first "
                            "10 s are centre-cropped to 256:224, encoded by the dVAE and summarised by the prior's "
                            "reference encoder")
    style.add_argument("--style-seed", type=int, default=None, metavar="N",
                       help="draw the unlabelled style from N(0, I) with this seed; without --style-from or "
                            "--style-seed the style is the prior's mean (z = 0)")
    _add_sampling_flags(gen)
    gen.add_argument("--dvae", type=Path, default=None,
                     help="dVAE checkpoint, instead of a bundle (default with --prior: models/dvae/dvae.pt)")
    gen.add_argument("--prior", type=Path, default=None,
                     help="prior checkpoint, instead of a bundle (default with --dvae: models/prior/prior.pt)")
    gen.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run the models (default cpu)")
    gen.add_argument("--no-mark", action="store_true",
                     help="leave out the visible 'SYNTHETIC' mark (the provenance metadata stays)")
    gen.set_defaults(func=_generate)


def _add_sampling_flags(gen: argparse.ArgumentParser) -> None:
    default = "default: the model bundle's, for checkpoints evaluate.{} in params.yaml"
    gen.add_argument("--temperature", type=float, default=None,
                     help=f"sampling temperature of the prior (0 = greedy; {default.format('temperature')})")
    gen.add_argument("--guidance", type=float, default=None, metavar="G",
                     help="classifier-free guidance by the audio: sample from uncond + G × (cond − uncond), the "
                          "prior's predictions without and with the audio; higher follows the speech more closely "
                          "(on the mouth box of the model's framing, evaluate.guidance_region; unguided elsewhere) "
                          f"(1 = off; {default.format('guidance')} for a prior trained with prior.audio_dropout > 0, "
                          "else 1)")
    gen.add_argument("--top-k", type=int, default=None,
                     help=f"sample among the k most likely codes (0 = all; {default.format('top_k')})")
    gen.add_argument("--top-p", type=float, default=None,
                     help=f"nucleus sampling mass (1 = off; {default.format('top_p')})")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed and options give the same video")


def _add_export(sub) -> None:
    exp = sub.add_parser(
        "export", help="write a model bundle from the last dvc repro", formatter_class=_Formatter,
        epilog=EXPORT_EXAMPLES,
        description="Write one file with everything generation needs (format: docs/design.md): the dVAE and "
                    "prior of the last `dvc repro`, the episode map with a reference frame of each episode (from "
                    "data/shards), params.yaml's sampling defaults and provenance. Run it in the nwt checkout. "
                    "--name puts the bundle into the model store ($NWT_HOME/models, default ~/.cache/nwt/models), "
                    "where `nwt generate --model NAME` finds it from any folder.")
    exp.add_argument("--out", type=Path, default=None, metavar="PATH", help="write the bundle to this file")
    exp.add_argument("--name", default=None, help="write the bundle into the model store under this name "
                                                  "(replacing a model of that name)")
    exp.add_argument("--default", action="store_true", help="make --name the store's default model")
    exp.add_argument("--dvae", type=Path, default=DVAE_MODEL, help=f"dVAE checkpoint (default {DVAE_MODEL})")
    exp.add_argument("--prior", type=Path, default=PRIOR_MODEL, help=f"prior checkpoint (default {PRIOR_MODEL})")
    exp.add_argument("--params", type=Path, default=PARAMS_FILE,
                     help="params file whose evaluate section gives the sampling defaults (default params.yaml)")
    exp.add_argument("--shards", type=Path, default=Path("data/shards"),
                     help="shards to take each episode's reference frame from (default data/shards; "
                          "missing: no reference frames)")
    exp.set_defaults(func=_export)


def _add_models(sub) -> None:
    mod = sub.add_parser(
        "models", help="list, inspect and choose the models of the store", formatter_class=_Formatter,
        epilog=MODELS_EXAMPLES,
        description="The model store is $NWT_HOME/models (default ~/.cache/nwt/models), filled by "
                    "`nwt export --name NAME`. Without options: list its models (name, size, date, source; the "
                    "default marked *) and say which model `nwt generate` uses from here. " + RESOLUTION)
    what = mod.add_mutually_exclusive_group()
    what.add_argument("--default", metavar="NAME", help="make NAME the default model")
    what.add_argument("--remove", metavar="NAME", help="delete NAME from the store")
    what.add_argument("--info", metavar="NAME_OR_PATH",
                      help="show a bundle's episodes, sampling defaults, timing and provenance")
    mod.add_argument("--looks", type=Path, default=None, metavar="SHEET.png",
                     help="with --info: write the episodes' reference frames side by side, labelled with their ids")
    mod.set_defaults(func=_models)


def _add_serve(sub) -> None:
    from nwt.serve import DEFAULT_HOST, DEFAULT_MAX_SECONDS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

    srv = sub.add_parser(
        "serve", help="a local web page: upload or record speech, get the video", formatter_class=_Formatter,
        epilog=SERVE_EXAMPLES,
        description="Serve a web page on this machine where speech is uploaded or recorded, an episode's look, "
                    "style seed, guidance and seed are chosen, progress is shown and the video plays and downloads. "
                    "The model loads once at start: the one nwt generate uses (--model NAME_OR_PATH, $NWT_MODEL, "
                    "the checkout you stand in, the store's default; see nwt generate --help). One video is "
                    "generated at a time; the "
                    "others wait in a queue whose position the page shows. Uploads and videos stay in a temporary "
                    "folder, removed when the server stops (Ctrl-C); nothing leaves the machine. Every video "
                    "carries the visible SYNTHETIC mark.")
    srv.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                     help="a model bundle: a name in the store or a file (default: as nwt generate, see above)")
    srv.add_argument("--host", default=DEFAULT_HOST,
                     help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 opens it to "
                          "the network, without any login)")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    srv.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                     help=f"largest upload accepted, in MB (default {DEFAULT_MAX_UPLOAD_MB:g})")
    srv.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                     help=f"longest audio accepted, in seconds (default {DEFAULT_MAX_SECONDS:g})")
    srv.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run the models (default cpu)")
    srv.set_defaults(func=_serve)


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
