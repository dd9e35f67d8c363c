"""Every shipped profile applies to the shipped params.yaml (no key it sets has gone stale)."""
from __future__ import annotations

import importlib.util

import pytest
import yaml
from conftest import REPO

spec = importlib.util.spec_from_file_location("apply_profile", REPO / "scripts" / "apply_profile.py")
apply_profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(apply_profile)


@pytest.mark.parametrize("profile", sorted((REPO / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_profile_applies_to_params(profile):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overlay = yaml.safe_load(profile.read_text()) or {}
    merged = apply_profile.merge(params, overlay)

    def check(over, into):
        for key, value in over.items():
            if isinstance(value, dict):
                check(value, into[key])
            else:
                assert into[key] == value

    check(overlay, merged)


def test_unknown_key_fails_loudly():
    with pytest.raises(KeyError, match="train_dvae.stepz"):
        apply_profile.merge({"train_dvae": {"steps": 1}}, {"train_dvae": {"stepz": 2}})
