"""Distribution metrics of the evaluate stage: how far the frames of each source (gt, recon, gen)
lie from the ground-truth test frames, as Fréchet distances in three feature spaces.

- `frechet_sync_feat`: the trained sync expert's video embedding of every 5-frame mouth window
  (the windows LSE scores); always computed, it needs nothing;
- `fid`: Inception-v3 pool3 of every `fid_frame_stride`-th frame; needs `evaluate.fid_weights`;
- `fvd`: I3D logits of 16-frame segments; needs `evaluate.fvd_weights`.

Each is measured across clip halves (`nwt.eval.frechet.split_half_frechet`), so `gt.<key>` is
the ground truth's split-half floor and `recon.<key>` / `gen.<key>` sit beside it with the same
sample sizes. `frechet_sync_feat` sees only the grey lower face and is trained for sync, so it
measures mouth shape and motion, not colour or identity; it is not comparable with FID/FVD
figures of other work. A metric that is not computed is recorded as null with a `<key>_note`
saying why, so the keys stay the same for `dvc exp show`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from nwt.eval.frechet import split_half_frechet
from nwt.params import EvaluateParams

SOURCES = ("gt", "recon", "gen")
SYNC_FEAT = "frechet_sync_feat"
Extractor = Callable[[np.ndarray], np.ndarray]  # (T, H, W, 3) uint8 frames of one clip → (n, D)


def standard_extractors(cfg: EvaluateParams) -> dict[str, Extractor | None]:
    """{"fid": …, "fvd": …} from the evaluate params; None where the weights param is empty.
    A named file that is missing raises here, before any clip is evaluated."""
    extractors: dict[str, Extractor | None] = {"fid": None, "fvd": None}
    if cfg.fid_weights:
        from nwt.eval.fid import fid_features, load_fid_inception

        inception = load_fid_inception(cfg.fid_weights)
        stride = max(1, cfg.fid_frame_stride)
        extractors["fid"] = lambda frames: fid_features(inception, frames[::stride])
    if cfg.fvd_weights:
        from nwt.eval.fvd import fvd_features, load_i3d

        i3d = load_i3d(cfg.fvd_weights)
        extractors["fvd"] = lambda frames: fvd_features(i3d, frames)
    return extractors


class DistributionMetrics:
    """Collects per-clip features of every source, in test-clip order, then the Fréchet figures.

        dist = DistributionMetrics(standard_extractors(cfg))
        for clip ...:
            dist.add(SYNC_FEAT, source, lse["video_emb"])   # features computed elsewhere
            dist.add_frames(source, frames)                 # runs fid / fvd where named
        per_source, extra = dist.metrics()
    """

    def __init__(self, extractors: Mapping[str, Extractor | None], sources=SOURCES):
        self.extractors = dict(extractors)
        self.sources = tuple(sources)
        self.features: dict[str, dict[str, list[np.ndarray]]] = {
            name: {s: [] for s in self.sources} for name in (SYNC_FEAT, *self.extractors)}

    def add(self, name: str, source: str, features: np.ndarray) -> None:
        self.features[name][source].append(np.asarray(features, np.float64))

    def add_frames(self, source: str, frames: np.ndarray) -> None:
        for name, extract in self.extractors.items():
            if extract is not None:
                self.add(name, source, extract(frames))

    def metrics(self) -> tuple[dict[str, dict[str, float | None]], dict]:
        """({source: {key: value or None}}, {"<key>_note": why not computed, "frechet_samples":
        {key: feature rows of the ground truth}})."""
        per_source: dict[str, dict[str, float | None]] = {s: {} for s in self.sources}
        extra: dict = {"frechet_samples": {}}
        for name, by_source in self.features.items():
            values: Mapping[str, float | None] = {}
            if name in self.extractors and self.extractors[name] is None:
                extra[f"{name}_note"] = f"not computed: evaluate.{name}_weights is empty"
            else:
                try:
                    values = split_half_frechet(by_source, reference="gt")
                except ValueError as err:  # fewer than 2 test clips with features
                    extra[f"{name}_note"] = f"not computed: {err}"
                extra["frechet_samples"][name] = int(sum(len(f) for f in by_source["gt"]))
            for s in self.sources:
                v = values.get(s)
                per_source[s][name] = None if v is None else float(f"{v:.6g}")  # FDs span decades: significant digits
        return per_source, extra
