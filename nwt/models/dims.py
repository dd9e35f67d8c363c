"""Reading the `dims` dict of a checkpoint written by an older layout, explicitly.

Every model's `*Dims` dataclass is saved as a plain dict in its checkpoint and has no field
defaults: a field is either a params key or derived from the data. Checkpoints written before a
field existed, or while a fixed architecture choice was still a field, are read by
`migrate_dims`, which says for each model exactly what an older dict may lack (and what the
code of that time used in its place) and which fixed values it may still carry.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


class DimsError(ValueError):
    """A checkpoint's dims dict that no known layout explains."""


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def migrate_dims(saved: Mapping[str, Any], cls: type, added: Mapping[str, Any], fixed: Mapping[str, Any]) -> dict:
    """`saved` (a checkpoint's dims dict, any layout this code has written) → keyword arguments of
    `cls`. `added`: fields the class gained since older checkpoints, with the value the code used
    before they existed (filled in when absent). `fixed`: former fields that are now constants
    (dropped when the saved value equals the constant; any other value is an error, as no
    model of this code can be built with it). Unknown or missing keys are errors."""
    name = cls.__name__
    if not isinstance(saved, Mapping):
        raise DimsError(f"{name}: checkpoint dims must be a dict, got {type(saved).__name__}")
    fields = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for key, value in saved.items():
        if key in fixed:
            if _plain(value) != _plain(fixed[key]):
                raise DimsError(f"{name}: the checkpoint was built with {key}={value!r}, but {key} is fixed at "
                                f"{fixed[key]!r} in this code; retrain the model")
        elif key in fields:
            out[key] = value
        else:
            raise DimsError(f"{name}: unknown key {key!r} in the checkpoint's dims (known: {', '.join(fields)})")
    for key, value in added.items():
        out.setdefault(key, value)
    missing = [k for k in fields if k not in out]
    if missing:
        raise DimsError(f"{name}: the checkpoint's dims lack {', '.join(missing)}")
    return out
