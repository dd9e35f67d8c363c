import logging

import torch

from nwt.precision import warn_if_cpu_bf16_emulated


def test_cpu_bf16_warns_only_where_the_cpu_would_emulate_it(monkeypatch, caplog):
    """cpu_bf16 on a CPU without AVX512-BF16 or AMX is slower than fp32: say so, once, and only there."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="nwt.train.common"):
        warn_if_cpu_bf16_emulated("cpu", cpu_bf16=False)
        warn_if_cpu_bf16_emulated("cuda", cpu_bf16=True)
        assert not caplog.records
        warn_if_cpu_bf16_emulated("cpu", cpu_bf16=True)
    assert len(caplog.records) == 1 and "emulated" in caplog.records[0].getMessage()

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nwt.train.common"):
        warn_if_cpu_bf16_emulated("cpu", cpu_bf16=True)
    assert not caplog.records
