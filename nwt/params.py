"""params.yaml access for the stage scripts: one section per stage, plus `media`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nwt.constants import Timing

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run stages from the repository root (dvc repro does)")
    with path.open() as f:
        return yaml.safe_load(f) or {}


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in params:
        raise KeyError(f"params.yaml has no `{name}` section")
    return params[name]


def timing(params: dict[str, Any]) -> Timing:
    media = section(params, "media")
    return Timing(fps=int(media["fps"]), sample_rate=int(media["sample_rate"]))
