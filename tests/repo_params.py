"""The repository's params.yaml, typed: tests start from its sections and change what they need
with `nwt.params.with_changes` (params.yaml is the only place a default lives)."""
from pathlib import Path

from nwt.params import load_params

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_params(REPO / "params.yaml")
TIMING = PARAMS.media.timing
