import numpy as np
import pytest

from nwt.eval.metrics import psnr_db, psnr_per_frame, sharpness_ratio, ssim


def test_psnr_and_ssim_of_identical_and_shifted_frames():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.all(psnr_per_frame(a, a) == 100.0) and psnr_db(a, a) == 100.0 and np.allclose(ssim(a, a), 1.0)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 25 < psnr_db(a, b) < 30.2 and ssim(a, b).mean() < 1.0


def test_ssim_matches_scikit_image():
    """Our SSIM is Wang et al.'s with a Gaussian window, as scikit-image computes it with
    gaussian_weights=True, use_sample_covariance=False, data_range=255 (per channel, averaged)."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    smooth = np.cumsum(rng.normal(0, 6, (3, 48, 40, 3)), axis=1)  # images with structure, not white noise
    ref = np.clip(smooth - smooth.min() + 40, 0, 255).astype(np.uint8)
    noisy = np.clip(ref.astype(int) + rng.integers(-25, 26, ref.shape), 0, 255).astype(np.uint8)
    ours = ssim(ref, noisy)
    theirs = [structural_similarity(r, t, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=-1) for r, t in zip(ref, noisy)]
    assert 0.2 < min(theirs) and max(theirs) < 0.99  # a case where SSIM says something
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_psnr_is_the_mean_of_per_frame_psnrs_not_of_the_pooled_error():
    ref = np.full((2, 8, 8, 3), 100, np.uint8)
    test = ref.copy()
    test[0] += 1  # MSE 1 → 48.13 dB
    test[1] += 10  # MSE 100 → 28.13 dB
    per_frame = 10 * np.log10(255.0**2 / np.array([1.0, 100.0]))
    np.testing.assert_allclose(psnr_per_frame(ref, test), per_frame)
    assert psnr_db(ref, test) == pytest.approx(per_frame.mean())  # 38.13, where the pooled MSE (50.5) gives 31.1
    assert psnr_db(ref, test) - 10 * np.log10(255.0**2 / 50.5) > 7


def test_sharpness_ratio_is_below_one_for_a_blur():
    import cv2

    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    blurred = np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in ref])
    assert sharpness_ratio(ref, ref) == pytest.approx(1.0)
    assert sharpness_ratio(ref, blurred) < 0.5
