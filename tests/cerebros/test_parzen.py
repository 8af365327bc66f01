"""The Parzen estimators behind the TPE strategy."""
import numpy as np
import pytest

from cerebros import parzen


def test_numeric_density_is_normalised_on_its_interval():
    estimator = parzen.NumericParzen([0.05, 0.1, 0.9], [1.0, 0.5, 2.0], 0.0, 1.0)
    grid = np.linspace(0.0, 1.0, 20001)
    density = np.exp(estimator.log_pdf(grid))
    assert density.mean() == pytest.approx(1.0, abs=1e-3)  # the interval is 1 wide
    assert density[np.searchsorted(grid, 0.9)] > density[np.searchsorted(grid, 0.5)]


def test_numeric_samples_stay_inside_and_follow_the_density():
    estimator = parzen.NumericParzen([0.0, 0.2], [1.0, 1.0], 0.0, 1.0)  # a kernel on the edge
    draws = estimator.sample(np.random.default_rng(0), 50000)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    grid = np.linspace(0.0, 1.0, 20001)
    mean = (grid * np.exp(estimator.log_pdf(grid))).mean()
    assert draws.mean() == pytest.approx(mean, abs=0.005)


def test_repeated_values_share_one_kernel():
    repeated = parzen.NumericParzen([3.0, 3.0, 5.0], [1.0, 0.5, 1.0], 0.0, 10.0)
    merged = parzen.NumericParzen([3.0, 5.0], [1.5, 1.0], 0.0, 10.0)
    np.testing.assert_array_equal(repeated.centres, merged.centres)
    points = np.linspace(0.0, 10.0, 11)
    np.testing.assert_allclose(repeated.log_pdf(points), merged.log_pdf(points))


def test_kernels_narrow_where_observations_cluster():
    estimator = parzen.NumericParzen([0.50, 0.51, 0.52, 0.9], [1.0] * 4, 0.0, 1.0)
    sigmas = dict(zip(estimator.centres[:-1], estimator.sigmas[:-1]))
    assert sigmas[0.51] < sigmas[0.9]
    assert estimator.sigmas[-1] == 1.0  # the prior spans the interval
    assert sigmas[0.51] == pytest.approx(1.0 / 6)  # clipped at width / (n + 1)


def test_choice_probabilities_are_weighted_counts_plus_the_prior():
    estimator = parzen.ChoiceParzen([0, 0, 2], [1.0, 1.0, 0.5], 3)
    expected = np.array([2 + 1 / 3, 1 / 3, 0.5 + 1 / 3]) / 3.5
    np.testing.assert_allclose(estimator.probabilities, expected)
    np.testing.assert_allclose(np.exp(estimator.log_pdf([0, 1, 2])), expected)


@pytest.mark.parametrize("seed", range(10))
def test_suggestions_go_where_the_good_are_and_the_bad_are_not(seed):
    rng = np.random.default_rng(seed)
    good, bad = ([0.10, 0.12, 0.15], [1.0] * 3), ([0.11, 0.5, 0.6, 0.7, 0.8, 0.9], [1.0] * 6)
    assert parzen.NumericParameter(good, bad, 0.0, 1.0).suggest(rng) < 0.3
    assert parzen.ChoiceParameter((["relu", "relu"], [1.0, 1.0]), (["tanh", "elu"], [1.0, 1.0]),
                                  ("elu", "relu", "tanh")).suggest(rng) == "relu"


def test_integer_and_log_suggestions_respect_their_ranges():
    rng = np.random.default_rng(0)
    batch_size = parzen.NumericParameter(([16, 20], [1.0, 1.0]), ([200], [1.0]), 16, 256, log=True, integer=True)
    values = [batch_size.suggest(rng) for _ in range(200)]
    assert all(isinstance(v, int) and 16 <= v <= 256 for v in values)
    assert np.median(values) < 40
    learning_rate = parzen.NumericParameter(([1e-3], [1.0]), ([], []), 1e-4, 1e-1, log=True)
    rates = [learning_rate.suggest(rng) for _ in range(200)]
    assert all(1e-4 <= r <= 1e-1 for r in rates)
    assert parzen.NumericParameter(([], []), ([], []), 7, 7, integer=True).suggest(rng) == 7  # a fixed range
    # no observations: the prior alone, every integer of the range reachable
    prior = parzen.NumericParameter(([], []), ([], []), 1, 3, integer=True)
    assert {prior.suggest(rng) for _ in range(200)} == {1, 2, 3}
