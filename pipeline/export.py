"""Stage `export`: the models of this `dvc repro` as one model bundle, models/bundle/nwt.pt
(nwt.bundle: both models' weights and dims, the episode map with a reference frame per episode
from the shards, params.yaml's sampling defaults, provenance). It runs after evaluate, so a bundle
is written once its models have been evaluated. `nwt generate --model models/bundle/nwt.pt` reads it
from any folder; `nwt export --name NAME` puts one into the model store."""
from __future__ import annotations

from nwt.bundle import CHECKOUT_BUNDLE, build_bundle, write_bundle
from nwt.constants import DVAE_MODEL, PRIOR_MODEL
from nwt.params import load_params
from nwt.stage import DATA, stage


def main() -> None:
    params = load_params()
    with stage("export") as metrics:
        payload = build_bundle(DVAE_MODEL, PRIOR_MODEL, params, source="dvc repro", shards=DATA / "shards")
        write_bundle(CHECKOUT_BUNDLE, payload)
        episodes = payload["episodes"]
        metrics.update(bundle_mb=round(CHECKOUT_BUNDLE.stat().st_size / 1e6, 2), episodes=len(episodes["ids"]),
                       reference_frames=len(episodes["reference_ids"]))


if __name__ == "__main__":
    main()
