"""Model bundles: one file with everything `nwt generate` needs, read with
`torch.load(..., weights_only=True)` (plain containers and tensors only: nothing executable).

`nwt export` and the pipeline's `export` stage write one from the models of the last `dvc repro`;
`nwt generate --model PATH_OR_NAME` reads it from any folder, without params.yaml or data/.
A bundle is a dict (docs/design.md, "Model bundles"):

    format          "nwt-bundle"
    format_version  1 (a reader refuses any other version, saying so)
    dvae            the dVAE checkpoint as train_dvae wrote models/dvae/dvae.pt: dims, state_dict (EMA
                    weights), episode_ids, unseen_ids, timing, fingerprint, step
    prior           the prior checkpoint as train_prior wrote models/prior/prior.pt: dims, state_dict,
                    episode_ids, timing, fingerprint, step
    episodes        ids (what --episode takes: the prior's embedding rows, in order), unseen_ids (held
                    out in training: generated with the <unk> look), reference_ids and reference_frames,
                    (N, H, W, 3) uint8 RGB: the first frame of each episode's first train clip (an unseen
                    episode's: of its first unseen clip), so that a user can see each look
    sampling        temperature, top_k, top_p, guidance: params.yaml's evaluate section at export, the
                    defaults of `nwt generate` with this bundle
    timing          fps, sample_rate
    provenance      nwt_version, created (ISO 8601, UTC), source ("dvc repro" or the folder the
                    checkpoints came from), params_hash and params (the whole params.yaml as loaded),
                    dvae_fingerprint, prior_fingerprint (each covers its params, the contents of its
                    training data files and its model code: nwt/checkpoint.py)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import nwt
from nwt.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from nwt.constants import Timing
from nwt.params import WHOLE_FRAME, Params, SamplingParams, as_dict, build

FORMAT = "nwt-bundle"
FORMAT_VERSION = 1
CHECKOUT_BUNDLE = Path("models/bundle/nwt.pt")  # the export stage's output (dvc.yaml), relative to the checkout
KEYS = ("dvae", "prior", "episodes", "sampling", "timing", "provenance")


@dataclass
class Bundle:
    """A loaded bundle: `payload` is the dict above (checked), `path` where it was read from."""

    payload: dict
    path: Path | None = None

    @property
    def sampling(self) -> SamplingParams:
        # a bundle from before guidance_box guided the whole frame, as it was evaluated
        return build(SamplingParams, {"guidance_box": WHOLE_FRAME, **self.payload["sampling"]}, "the bundle's sampling")

    @property
    def timing(self) -> Timing:
        t = self.payload["timing"]
        return Timing(int(t["fps"]), int(t["sample_rate"]))

    @property
    def provenance(self) -> dict:
        return self.payload["provenance"]

    @property
    def episode_ids(self) -> list[str]:
        return list(self.payload["episodes"]["ids"])

    @property
    def unseen_ids(self) -> list[str]:
        return list(self.payload["episodes"]["unseen_ids"])

    def references(self) -> dict[str, np.ndarray]:
        """episode id → its reference frame, (H, W, 3) uint8 RGB."""
        eps = self.payload["episodes"]
        frames = eps["reference_frames"]
        return {e: frames[i].numpy() for i, e in enumerate(eps["reference_ids"])}

    def models(self, device: str = "cpu"):
        """(dVAE, its meta, prior, its meta), in eval mode on `device`; a meta is the checkpoint
        without its weights (as nwt.models.dvae_io.load_dvae and prior_io.load_prior return)."""
        from nwt.models.dvae import DVAE, DVAEDims
        from nwt.models.prior import Prior, PriorDims

        d, p = self.payload["dvae"], self.payload["prior"]
        dvae = DVAE(DVAEDims.from_checkpoint(d["dims"]))
        dvae.load_state_dict(d["state_dict"])
        prior = Prior(PriorDims.from_checkpoint(p["dims"]))
        try:
            prior.load_state_dict(p["state_dict"])
        except RuntimeError as err:
            raise RuntimeError(f"{self.path or 'the bundle'} holds a prior of an older layout ({err}): export it "
                               "again from a retrained prior (`dvc repro`, then `nwt export`)") from err
        meta = [{k: v for k, v in ckpt.items() if k != "state_dict"} for ckpt in (d, p)]
        return dvae.to(device).eval(), meta[0], prior.to(device).eval(), meta[1]

    def generator(self, device: str = "cpu"):
        """A nwt.generate.Generator of this bundle's models, with its sampling defaults."""
        from nwt.generate import Generator, check_device

        check_device(device)
        dvae, dvae_meta, prior, prior_meta = self.models(device)
        return Generator.from_models(dvae, dvae_meta, prior, prior_meta, device, sampling_defaults=self.sampling,
                                     source=self.path or "the bundle", references=self.references())


# ----------------------------------------------------------------------------- reading
def load_bundle(path: str | os.PathLike, mmap: bool = False) -> Bundle:
    """Read and check a bundle (weights_only). `mmap=True` maps the file instead of reading it:
    cheap when only the small entries (provenance, sampling, episode ids) are looked at.
    Raises ValueError for a file that is not a bundle, or a bundle of another format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model bundle {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # not a torch file, torn, or holding more than containers and tensors
        raise ValueError(f"cannot read {path} as an nwt model bundle ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    check(payload, path)
    return Bundle(payload, path)


def check(payload: object, path: object = "the bundle") -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an nwt model bundle (a checkpoint? bundles are written by "
                         "`nwt export` and the export stage)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} is an nwt model bundle of format version {version}, and nwt {nwt.__version__} "
                         f"reads version {FORMAT_VERSION} only: use the nwt version that wrote it "
                         f"({payload.get('provenance', {}).get('nwt_version', '?')}), or export the models "
                         "again with this one")
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path}: a bundle of format version {version} without {', '.join(missing)}")


# ----------------------------------------------------------------------------- writing
def build_bundle(dvae_path: str | os.PathLike, prior_path: str | os.PathLike, params: Params, source: str,
                 shards: str | os.PathLike | None = None) -> dict:
    """The bundle of two checkpoints: sampling defaults from `params.evaluate`, a reference frame
    per episode from the shards in `shards` (none when None or missing), checked by building a
    Generator of it (prior and dVAE must fit each other)."""
    from nwt.generate import default_sampling

    for path, stage in ((dvae_path, "train_dvae"), (prior_path, "train_prior")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} not found: run `dvc repro {stage}` in the nwt checkout first, "
                                    "or pass --dvae and --prior")
    dvae, prior = load_checkpoint(dvae_path), load_checkpoint(prior_path)
    timing = Timing.from_checkpoint(prior, prior_path)
    ids, unseen = list(prior.get("episode_ids", [])), list(dvae.get("unseen_ids", []))
    refs = reference_frames(shards, ids, unseen) if shards is not None and Path(shards).is_dir() else {}
    frames = (torch.from_numpy(np.stack(list(refs.values()))) if refs
              else torch.zeros((0, 0, 0, 3), dtype=torch.uint8))
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dvae": dvae, "prior": prior,
        "episodes": {"ids": ids, "unseen_ids": unseen, "reference_ids": list(refs), "reference_frames": frames},
        "sampling": as_dict(default_sampling(params)),
        "timing": {"fps": timing.fps, "sample_rate": timing.sample_rate},
        "provenance": {
            "nwt_version": nwt.__version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": source,
            "params_hash": fingerprint(as_dict(params)),
            "params": as_dict(params),
            "dvae_fingerprint": str(dvae.get("fingerprint", "?")),
            "prior_fingerprint": str(prior.get("fingerprint", "?")),
        },
    }
    Bundle(payload).generator()  # the same checks as generating from it: an unusable bundle is never written
    return payload


def write_bundle(path: str | os.PathLike, payload: dict) -> None:
    """Atomically, with the modes the umask gives (nwt.atomic)."""
    check(payload, path)
    save_checkpoint(path, payload)


def reference_frames(shards: str | os.PathLike, episode_ids: list[str], unseen_ids: list[str]) -> dict[str, np.ndarray]:
    """episode id → its most typical frame (nwt.eval.look.medoid) among REFERENCE_FRAMES_PER_CLIP
    frames of each of its train clips (an episode in `unseen_ids`: of its unseen clips), in the
    order of `episode_ids`; episodes with no such clip are left out. The generator primes every
    generation with this frame, so it must be typical: the first frame of a clip can sit at an
    untypical framing that a whole generation then keeps (docs/experiments.md, 2026-12-06)."""
    try:
        from nwt.data.shards import shard_paths
        from nwt.eval.look import medoid
    except ImportError as err:  # a core-only install: the shards' readers come with the pipeline extra
        raise RuntimeError(f"reading reference frames from {shards} needs the pipeline extra ({err.name} is not "
                           "installed): pip install 'nwt[pipeline]' — `nwt export` belongs in the checkout after "
                           "dvc repro") from err

    candidates: dict[str, list[np.ndarray]] = {}
    for split, wanted in (("train", set(episode_ids) - set(unseen_ids)), ("unseen", set(unseen_ids))):
        for path in shard_paths(shards, split):
            _clip_frames(path, wanted, candidates)
    return {e: candidates[e][medoid(np.stack(candidates[e]))] for e in episode_ids if e in candidates}


REFERENCE_FRAMES_PER_CLIP = 4  # evenly spaced frames of each clip among which an episode's reference is chosen


def _clip_frames(path: str, wanted: set[str], found: dict[str, list[np.ndarray]]) -> None:
    """Add REFERENCE_FRAMES_PER_CLIP evenly spaced frames of every clip of the wanted episodes in
    one shard (nwt.data.shards format: members `<key>.json` and `<key>.mjpeg` per clip)."""
    from nwt.data.shards import decode_frames

    with tarfile.open(path, "r:") as tar:
        members: dict[str, dict[str, tarfile.TarInfo]] = {}
        for member in tar:
            key, _, ext = member.name.partition(".")
            entry = members.setdefault(key, {})
            entry[ext] = member
            if not {"json", "mjpeg"} <= entry.keys():
                continue
            meta = json.loads(tar.extractfile(entry["json"]).read())
            episode = meta.get("episode_id")
            if episode in wanted:
                n = len(meta["frame_bytes"])
                which = sorted({int(i) for i in np.linspace(0, n - 1, REFERENCE_FRAMES_PER_CLIP, endpoint=False)})
                blob = tar.extractfile(entry["mjpeg"]).read()
                found.setdefault(episode, []).extend(decode_frames(blob, meta["frame_bytes"], which))
            del members[key]


def contact_sheet(bundle: Bundle) -> np.ndarray:
    """The reference frames side by side, each labelled with its episode id: (H + 20, N × W, 3)
    uint8 RGB (what `nwt models --info NAME --looks sheet.png` writes)."""
    import cv2

    refs = bundle.references()
    if not refs:
        raise ValueError(f"{bundle.path or 'the bundle'} holds no reference frames (exported without data/shards)")
    tiles = []
    for episode, frame in refs.items():
        label = np.zeros((20, frame.shape[1], 3), np.uint8)
        cv2.putText(label, episode, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([frame, label]))
    return np.concatenate(tiles, axis=1)
