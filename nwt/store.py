"""The local model store and how `nwt generate` finds its model.

Store: `$NWT_HOME` (default `~/.cache/nwt`) holds bundles (nwt.bundle) as
`$NWT_HOME/models/<name>.pt`; `nwt export --name NAME` puts one there, `nwt models` lists them.
The default is the name in `$NWT_HOME/default_model` (`nwt models --default NAME`), or else the
store's only model.

Resolution order (`resolve`; docs/design.md, "Model bundles"), first match wins:
1. `--model NAME_OR_PATH` (or the checkpoints `--dvae` / `--prior`, as before bundles);
2. `$NWT_MODEL`, NAME_OR_PATH as for --model;
3. the checkout you stand in: its `models/dvae/dvae.pt` + `models/prior/prior.pt` of the last
   `dvc repro` (sampling defaults from its params.yaml, as before bundles), else its exported bundle
   `models/bundle/nwt.pt`;
4. the store's default model, or its only one.
NAME_OR_PATH is a path when it holds a `/` or ends in `.pt`, else a store name (or, failing that,
an existing file of that name). Nothing found is an error that says how to get a model.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nwt.atomic import atomic_path
from nwt.bundle import CHECKOUT_BUNDLE, Bundle, load_bundle, reference_frames
from nwt.constants import DVAE_MODEL, PRIOR_MODEL
from nwt.params import PARAMS_FILE, SamplingParams, load_params

if TYPE_CHECKING:  # nwt.generate (torch) loads with a model, not with `nwt models`
    from nwt.generate import Generator

HOME_ENV, MODEL_ENV = "NWT_HOME", "NWT_MODEL"
DEFAULT_HOME = Path("~/.cache/nwt")
SUFFIX = ".pt"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def models_dir() -> Path:
    return home() / "models"


def _default_file() -> Path:
    return home() / "default_model"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.endswith(SUFFIX):
        raise ValueError(f"model name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or "
                         f"digit, not ending in {SUFFIX})")
    return name


def path_of(name: str) -> Path:
    return models_dir() / f"{check_name(name)}{SUFFIX}"


def names() -> list[str]:
    folder = models_dir()
    return sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}") if p.is_file()) if folder.is_dir() else []


def default_name() -> str | None:
    """The default model: the one `nwt models --default` set (while it exists), else the only one."""
    have = names()
    chosen = _default_file().read_text().strip() if _default_file().is_file() else ""
    if chosen in have:
        return chosen
    return have[0] if len(have) == 1 else None


def set_default(name: str) -> None:
    if name not in names():
        raise ValueError(f"no model {name!r} in {models_dir()}{_have()}")
    with atomic_path(_default_file()) as tmp:
        tmp.write_text(name + "\n")


def remove(name: str) -> None:
    path = path_of(name)
    if not path.is_file():
        raise ValueError(f"no model {name!r} in {models_dir()}{_have()}")
    path.unlink()
    if _default_file().is_file() and _default_file().read_text().strip() == name:
        _default_file().unlink()


def _have() -> str:
    have = names()
    return f"; models there: {', '.join(have)}" if have else " (the store is empty)"


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    size: int
    created: str
    source: str
    default: bool


def entries() -> list[Entry]:
    """Every model in the store, by name, with what `nwt models` shows (a file that is not a
    readable bundle is listed with the reason as its source)."""
    default, out = default_name(), []
    for name in names():
        path = path_of(name)
        try:
            prov = load_bundle(path, mmap=True).provenance
            created, source = str(prov.get("created", "?")), str(prov.get("source", "?"))
        except (ValueError, OSError) as exc:
            created, source = "?", f"unreadable: {exc}"
        out.append(Entry(name, path, path.stat().st_size, created, source, name == default))
    return out


# ----------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class ModelChoice:
    """What `nwt generate` uses: a bundle file, or the two checkpoints of a checkout (whose
    sampling defaults come from params.yaml); `origin` says which rule chose it."""

    origin: str
    bundle: Path | None = None
    dvae: Path | None = None
    prior: Path | None = None

    def describe(self) -> str:
        what = f"bundle {self.bundle}" if self.bundle else f"checkpoints {self.dvae} + {self.prior}"
        return f"{what} ({self.origin})"

    def load(self, device: str = "cpu") -> tuple[Generator, SamplingParams, Bundle | None]:
        """(the Generator, its sampling defaults, the bundle it came from or None): a bundle's own
        defaults, or for a checkout's checkpoints the evaluate section of the params.yaml here
        (FileNotFoundError without one: the library and the web page have no flags to fill in)."""
        if self.bundle is None and not PARAMS_FILE.is_file():
            raise FileNotFoundError(f"no {PARAMS_FILE} here ({Path.cwd()}) for the sampling defaults of "
                                    f"{self.describe()}: work in the nwt checkout, or use a model bundle")
        gen, bundle = self.generator(device)
        from nwt.generate import default_sampling

        sampling = bundle.sampling if bundle is not None else default_sampling(load_params(PARAMS_FILE))
        return gen, sampling, bundle

    def generator(self, device: str = "cpu") -> tuple[Generator, Bundle | None]:
        """(the Generator, the bundle it came from or None): a bundle's, or the checkpoints' with
        the reference frames of the checkout's data/shards (`checkout_references`) as primers."""
        from nwt.generate import Generator

        if self.bundle is not None:
            bundle = load_bundle(self.bundle)
            return bundle.generator(device), bundle
        gen = Generator(self.dvae, self.prior, device)
        gen.references = checkout_references(gen)
        return gen, None


def checkout_references(gen: Generator) -> dict:
    """The reference frames (the generator's primers) of a checkout's data/shards, as `nwt export`
    puts them in a bundle; none without data/shards or on a core-only install (a warning says so:
    generations then start from the prior alone, whose first frame can be another look)."""
    shards = Path("data/shards")
    if not shards.is_dir():
        return {}
    try:
        return reference_frames(shards, gen.episode_ids, list(gen.dvae_meta.get("unseen_ids", [])))
    except RuntimeError as exc:  # the shard reader is of the pipeline extra
        print(f"nwt: no reference frames from {shards} ({exc})", file=sys.stderr)
        return {}


def resolve(model: str | None = None, dvae: str | os.PathLike | None = None,
            prior: str | os.PathLike | None = None) -> ModelChoice:
    """The model for `nwt generate` by the resolution order above (relative paths: the current
    directory). Raises FileNotFoundError, saying how to get a model, when there is none."""
    if model is not None and (dvae is not None or prior is not None):
        raise ValueError("give either --model or --dvae/--prior, not both")
    if model is not None:
        return named(model, "--model")
    if dvae is not None or prior is not None:
        return ModelChoice("--dvae/--prior", dvae=Path(dvae or DVAE_MODEL), prior=Path(prior or PRIOR_MODEL))
    if os.environ.get(MODEL_ENV):
        return named(os.environ[MODEL_ENV], f"${MODEL_ENV}")
    if DVAE_MODEL.is_file() and PRIOR_MODEL.is_file():
        return ModelChoice("this checkout's last dvc repro", dvae=DVAE_MODEL, prior=PRIOR_MODEL)
    if CHECKOUT_BUNDLE.is_file():
        return ModelChoice("this checkout's exported bundle", bundle=CHECKOUT_BUNDLE)
    name = default_name()
    if name is not None:
        return ModelChoice(f"the store's default model {name!r}", bundle=path_of(name))
    raise FileNotFoundError(no_model_message())


def named(spec: str, origin: str) -> ModelChoice:
    """A bundle by NAME_OR_PATH (a path when it holds a `/` or ends in .pt, else a store name or
    an existing file); `origin` names the flag or variable it came from in errors."""
    path = Path(spec).expanduser()
    if "/" in spec or os.sep in spec or spec.endswith(SUFFIX):
        if not path.is_file():
            raise FileNotFoundError(f"{origin} {spec}: no such model bundle file")
        return ModelChoice(origin, bundle=path)
    if NAME.fullmatch(spec) and spec in names():
        return ModelChoice(f"{origin}, from the store", bundle=path_of(spec))
    if path.is_file():
        return ModelChoice(origin, bundle=path)
    raise FileNotFoundError(f"{origin} {spec!r}: no model of that name in the store ({models_dir()}){_have()}; "
                            "`nwt export --name NAME` in the nwt checkout puts one there")


def no_model_message() -> str:
    lines = ["no model to generate with. Get one:",
             "  - in the nwt checkout, `dvc repro` trains the models (then run nwt generate there), and",
             f"    `nwt export --name NAME` puts them into the model store ({models_dir()}) for use from any folder;",
             "  - or pass --model PATH_OR_NAME (a bundle written by `nwt export`), or set $NWT_MODEL to one."]
    have = names()
    if len(have) > 1:
        lines.append(f"The store holds {len(have)} models ({', '.join(have)}) but no default: "
                     "choose one with --model NAME, or `nwt models --default NAME`.")
    partial = [p for p in (DVAE_MODEL, PRIOR_MODEL) if p.is_file()]
    if len(partial) == 1:
        missing, stage = (PRIOR_MODEL, "train_prior") if partial[0] == DVAE_MODEL else (DVAE_MODEL, "train_dvae")
        lines.append(f"Here {partial[0]} exists but {missing} does not: `dvc repro {stage}`.")
    return "\n".join(lines)
