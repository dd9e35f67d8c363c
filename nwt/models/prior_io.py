"""Load a trained prior from `prior.pt` alone (dims dict + weights; weights_only=True).

The dims dict may be of an older layout: `PriorDims.from_checkpoint` reads it (nwt.models.prior.migrate_prior_dims).
"""
from __future__ import annotations

import os

import torch

from nwt.checkpoint import load_checkpoint
from nwt.models.prior import Prior, PriorDims


def load_prior(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Prior, dict]:
    """(Prior in eval mode on `device`, meta) where meta holds everything in the file except
    the weights: dims, episode_ids, timing, fingerprint, step."""
    ckpt = load_checkpoint(path, map_location=device)  # weights_only=True
    model = Prior(PriorDims.from_checkpoint(ckpt["dims"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:  # weights of an older model layout: say what to do, not just which keys
        raise RuntimeError(f"{path} was written by an older version of the prior ({err}); retrain it: "
                           "`dvc repro train_prior`") from err
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta
