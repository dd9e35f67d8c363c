"""Apply a params profile: `python scripts/apply_profile.py profiles/NAME.yaml [params.yaml]`.

A profile is a partial params.yaml; its keys (nested) replace those in params.yaml, so that
`dvc repro` / `dvc exp run` then run that profile. Only existing keys may be set (as with
`dvc exp run -S`), so a typo fails loudly instead of adding a dead key, and the result is checked
like params.yaml itself (`nwt.params`: types and choices) before it is written.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from nwt.params import Params, build


def merge(base: dict, overlay: dict, path: str = "") -> dict:
    for key, value in overlay.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            raise KeyError(f"profile sets {where}, which params.yaml does not have")
        if isinstance(value, dict):
            merge(base[key], value, where)
        else:
            base[key] = value
    return base


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if not argv or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    profile, params = Path(argv[0]), Path(argv[1] if len(argv) > 1 else "params.yaml")
    merged = merge(yaml.safe_load(params.read_text()), yaml.safe_load(profile.read_text()) or {})
    build(Params, merged, where="")  # a ParamsError names the key a profile sets wrongly
    params.write_text(yaml.safe_dump(merged, sort_keys=False))
    print(f"applied {profile} to {params} (comments in {params} are not kept; `git diff {params}` shows the change)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
