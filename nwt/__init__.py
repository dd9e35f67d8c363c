"""nwt: speech in, talking-presenter video out (NWT, Mama et al. 2021, reproduced and extended).

`nwt.load_model(NAME_OR_PATH)` is the Python API (nwt/api.py: README, "From Python"). It is
imported on first use, by name, so that `import nwt` — which every pipeline stage runs — stays
this file: no stage loads or depends on the API (tests/test_api.py checks that none uses it).
"""
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Clip", "Model", "Video", "__version__", "load_model"]
_API = ("Clip", "Model", "Video", "load_model")

if TYPE_CHECKING:
    from nwt.api import Clip, Model, Video, load_model


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module("nwt.api"), name)
    raise AttributeError(f"module 'nwt' has no attribute {name!r}")
