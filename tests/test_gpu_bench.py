"""scripts/gpu_bench.py runs end to end on CPU with tiny dims and merges its JSON (no GPU in CI)."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "scripts" / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_writes_and_merges_json(gpu_bench, tmp_path):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"machine": {"cpu_count": 2}, "gpu": {"Some Other GPU": {"kept": True}}}))
    args = ["--device", "cpu", "--tiny", "--steps", "2", "--batch-size", "2", "--threads", "1", "--out", str(out)]
    assert gpu_bench.main(args) == 0
    report = json.loads(out.read_text())
    assert report["machine"] == {"cpu_count": 2} and report["gpu"]["Some Other GPU"] == {"kept": True}
    (name,) = [k for k in report["gpu"] if k != "Some Other GPU"]
    r = report["gpu"][name]
    assert name.startswith("cpu") and r["device"] == name and r["tiny"] and r["peak_bf16_tflops"] is None
    d = r["dvae"]
    assert d["batch_size"] == 2 and d["steps"] == 2 and d["frames_per_s"] > 0
    assert d["flops_per_step"] > 0 and d["flops_per_frame"] * 2 == pytest.approx(d["flops_per_step"], abs=2)
    assert d["mfu"] is None and d["with_discriminator"]["frames_per_s"] > 0
    for key in ("prior", "prior_paper"):
        p = r[key]
        grid = p["dims"]["grid_h"] * p["dims"]["grid_w"] * p["dims"]["code_heads"]
        assert p["tokens_per_s"] == pytest.approx(p["frames_per_s"] * grid, rel=1e-3)
        assert p["flops_per_step"] > 0
        s = p["sampling"]["fp32"]
        assert s["frames"] > 0 and s["rtf"] > 0 and s["rtf_without_decode"] >= s["rtf"]
        assert s["rtf"] == pytest.approx(s["frames_per_s_with_decode"] / 25, rel=1e-2)
        m = p["sampling_mar"]  # the MAR prior of the same size: fewer frames, same figures
        assert m["fp32"]["frames"] == 2 and m["fp32"]["rtf"] > 0 and m["mar_dims"]["mar_layers"] >= 1
    assert r["prior_paper"]["dims"]["layers"] > r["prior"]["dims"]["layers"]


def test_peak_lookup(gpu_bench):
    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert gpu_bench.peak_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert gpu_bench.peak_tflops("Mystery Accelerator") is None
    m = gpu_bench.utilisation(flops_per_step=int(1e12), seconds=2.0, steps=4, peak=989.4)
    assert m["achieved_tflops"] == pytest.approx(2.0) and m["mfu"] == pytest.approx(2.0 / 989.4, abs=1e-4)
