"""The Fréchet distance on Gaussians whose distance is known in closed form."""
import numpy as np
import pytest
import scipy.linalg

from nwt.eval.frechet import (
    frechet_distance,
    frechet_distance_features,
    gaussian_stats,
    split_half_frechet,
    split_halves,
    trace_sqrt_product,
)


def random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def pytorch_fid_formula(mu1, s1, mu2, s2):
    """The textbook route (pytorch-fid's `calculate_frechet_distance` without its ε fallback)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_identical_gaussians_are_at_zero(rng):
    mu, s = rng.normal(size=6), random_cov(rng, 6)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)


def test_mean_shift_alone_gives_squared_distance(rng):
    s = random_cov(rng, 5)
    mu = rng.normal(size=5)
    shift = np.array([3.0, 0.0, -4.0, 0.0, 0.0])
    assert frechet_distance(mu, s, mu + shift, s) == pytest.approx(25.0, rel=1e-9)


def test_one_dimension_is_mean_and_std_differences():
    # N(1, 2²) vs N(-2, 5²): (1 + 2)² + (2 − 5)² = 18
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[25.0]]) == pytest.approx(18.0)


def test_diagonal_covariances_are_per_axis_std_differences(rng):
    a, b = rng.uniform(0.1, 4, 8), rng.uniform(0.1, 4, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-9)


def test_rotated_covariance_of_the_same_spectrum(rng):
    # Σ₂ = R Σ₁ Rᵀ with Σ₁ = diag(4, 1), R a 90° rotation → diag(1, 4): d² = (2 − 1)² + (1 − 2)² = 2
    s1 = np.diag([4.0, 1.0])
    r = np.array([[0.0, -1.0], [1.0, 0.0]])
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), r @ s1 @ r.T) == pytest.approx(2.0)


def test_general_covariances_match_scipy_sqrtm_and_are_symmetric(rng):
    for d in (2, 7, 32):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_cov(rng, d), random_cov(rng, d)
        got = frechet_distance(mu1, s1, mu2, s2)
        assert got == pytest.approx(pytorch_fid_formula(mu1, s1, mu2, s2), rel=1e-7)
        assert got == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
        assert trace_sqrt_product(s1, s2) == pytest.approx(np.trace(scipy.linalg.sqrtm(s1 @ s2).real), rel=1e-7)


def test_rank_deficient_covariances_stay_real_and_non_negative(rng):
    # fewer samples than dimensions: singular sample covariances, where sqrtm(Σ₁Σ₂) goes complex
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(10, 64)) + 0.5
    d = frechet_distance_features(a, b)
    assert np.isfinite(d) and d > 0
    s = random_cov(rng, 16, rank=3)
    assert frechet_distance(np.zeros(16), s, np.zeros(16), s) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("n1,n2,d", [(5, 9, 40), (30, 12, 31), (50, 60, 8)])
def test_sample_route_equals_covariance_route(rng, n1, n2, d):
    # fewer samples than dimensions: the N₁ × N₂ route; otherwise the covariances
    a, b = rng.normal(size=(n1, d)), 0.5 + 2 * rng.normal(size=(n2, d))
    want = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    # (rel 1e-6: the covariance route takes square roots of rounding-sized eigenvalues of the
    # rank-deficient products, √1e-16 each; the sample route has none)
    assert frechet_distance_features(a, b) == pytest.approx(want, rel=1e-6)


def test_samples_converge_to_the_closed_form(rng):
    # N(0, I) vs N(m, 4·I) in 4-D: d² = ‖m‖² + 4 · (1 − 2)² = 1 + 4
    m = np.array([1.0, 0.0, 0.0, 0.0])
    a = rng.normal(size=(20000, 4))
    b = m + 2.0 * rng.normal(size=(20000, 4))
    assert frechet_distance_features(a, b) == pytest.approx(5.0, rel=0.03)
    mu, cov = gaussian_stats(b)
    assert np.allclose(mu, m, atol=0.05) and np.allclose(cov, 4 * np.eye(4), atol=0.15)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="N ≥ 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="N ≥ 2"):
        frechet_distance_features(np.zeros((1, 8)), np.zeros((3, 8)))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance_features(np.zeros((4, 8)), np.zeros((4, 7)))
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_split_half_frechet_puts_sources_beside_the_reference_floor(rng):
    def clips(shift, n=6, rows=400):
        return [rng.normal(size=(rows, 3)) + shift for _ in range(n)]

    out = split_half_frechet({"gt": clips(0.0), "recon": clips(0.0), "gen": clips([3.0, 0.0, 0.0]),
                              "short": clips(0.0, n=1)})
    assert out["gt"] < 0.05 and out["recon"] < 0.05  # same distribution: only sampling noise
    assert out["gen"] == pytest.approx(9.0, rel=0.05)  # a mean shift of 3
    assert out["short"] is None  # one clip: no halves
    even, odd = split_halves([np.ones((2, 3)), 2 * np.ones((3, 3)), 3 * np.ones((1, 3)), np.zeros((0, 3))])
    assert len(even) == 3 and len(odd) == 3 and set(even[:, 0]) == {1.0, 3.0}
    with pytest.raises(ValueError, match="2 clips"):
        split_half_frechet({"gt": clips(0.0, n=1)})
