import numpy as np

from nwt.eval.metrics import psnr_db, psnr_per_frame, ssim


def test_psnr_and_ssim_of_identical_and_shifted_frames():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.all(psnr_per_frame(a, a) == 100.0) and psnr_db(a, a) == 100.0 and np.allclose(ssim(a, a), 1.0)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 25 < psnr_db(a, b) < 30.2 and ssim(a, b).mean() < 1.0
