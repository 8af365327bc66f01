"""The ask/tell strategies: random search, evolution, successive halving, Hyperband, TPE."""
import math

import numpy as np
import pytest

from cerebros import strategies
from cerebros.space import SearchSpace

SPACE = SearchSpace.from_dict({"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [2, 8],
                               "epochs": [3, 30]})


def fitness_of(trial):
    """A made-up score that prefers wide first levels, so selection has something to find."""
    return float(sum(unit.neurons for unit in trial.candidate.levels[0]))


def ask_all(strategy):
    trials = []
    while (trial := strategy.ask()) is not None:
        trials.append(trial)
    return trials


def test_random_search_numbers_trials_and_repeats_with_the_seed():
    first, second = strategies.RandomSearch(SPACE, 4, seed=7), strategies.RandomSearch(SPACE, 4, seed=7)
    trials = [first.ask() for _ in range(5)]
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.candidate for t in trials] == [second.ask().candidate for _ in range(5)]
    assert strategies.RandomSearch(SPACE, 4, seed=8).ask().candidate != trials[0].candidate


def test_evolution_generations_elites_and_history():
    evolution = strategies.Evolution(SPACE, 4, seed=1, population_size=6, elite_size=2, tau=0.5)
    generation0 = ask_all(evolution)
    assert len(generation0) == 6 and {t.generation for t in generation0} == {0}
    for trial in generation0:
        evolution.tell(trial, fitness_of(trial))
    generation1 = ask_all(evolution)
    assert len(generation1) == 4 and {t.generation for t in generation1} == {1}  # 2 elites are not retrained
    assert [t.number for t in generation1] == [6, 7, 8, 9]
    scores = [fitness_of(t) for t in generation0]
    assert evolution.population_history == [{"generation": 0, "best_fitness": max(scores),
                                             "mean_fitness": pytest.approx(np.mean(scores)),
                                             "std_fitness": pytest.approx(np.std(scores)), "population_size": 6}]
    for trial in generation1:
        evolution.tell(trial, fitness_of(trial))
    entry = evolution.population_history[1]
    assert entry["population_size"] == 6 and entry["best_fitness"] >= max(scores)  # elites kept
    known = {t.candidate.key() for t in generation0}
    assert all(t.candidate.key() not in known for t in generation1)  # children are new candidates


def test_evolution_does_not_depend_on_how_asks_and_tells_interleave():
    def run(batch):
        evolution = strategies.Evolution(SPACE, 4, seed=3, population_size=4, elite_size=1)
        seen = []
        while len(seen) < 11:
            asked = [t for t in (evolution.ask() for _ in range(batch)) if t is not None]
            for trial in asked:
                evolution.tell(trial, fitness_of(trial))
            seen += asked
        return [(t.number, t.candidate.key()) for t in seen[:11]]

    assert run(1) == run(2) == run(4)


def test_softmax_tournament_temperature():
    evolution = strategies.Evolution(SPACE, 4, seed=0, population_size=4, tau=0.01)
    greedy = evolution._selection_weights([3.0, 2.0, 1.0, -math.inf])
    assert greedy[0] > 0.999 and greedy[3] == 0
    evolution.tau = 1000.0
    assert np.allclose(evolution._selection_weights([3.0, 2.0, 1.0, 0.0]), 0.25, atol=1e-3)


@pytest.mark.parametrize("params,message", [({"population_size": 1}, "population_size"),
                                            ({"elite_size": 20}, "elite_size: must be smaller"),
                                            ({"tau": 0}, "tau: must be a positive number"),
                                            ({"crossover_rate": 1.5}, "crossover_rate"),
                                            ({"mutation_rate": -0.1}, "mutation_rate"),
                                            ({"tau": True}, "tau: must be a positive number"),
                                            ({"population_size": 4.0}, "population_size: must be an integer")])
def test_evolution_parameters_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        strategies.Evolution(SPACE, 4, seed=0, **params)


def test_the_default_elites_fit_every_valid_population():
    assert [strategies.Evolution(SPACE, 4, seed=0, population_size=size).params()["elite_size"]
            for size in (2, 3, 20)] == [1, 2, 2]
    pair = strategies.Evolution(SPACE, 4, seed=0, population_size=2)
    for _ in range(6):  # after the first generation of two, one elite is kept and one child asked
        trial = pair.ask()
        pair.tell(trial, -float(trial.number))  # the first trial stays the fittest
    history = pair.population_history
    assert len(history) == 5 and all(entry["population_size"] == 2 for entry in history)
    assert all(entry["best_fitness"] == 0.0 for entry in history)  # the elite survives every generation


def test_numpy_numbers_are_parameters_too():
    evolution = strategies.Evolution(SPACE, 4, seed=0, population_size=np.int64(4), tau=np.float32(0.5))
    assert evolution.params()["population_size"] == 4 and type(evolution.params()["tau"]) is float
    with pytest.raises(ValueError, match="min_epochs: must be at most the search space's maximum_epochs \\(30\\) when "
                                         "max_epochs is not given, got 50"):
        strategies.SuccessiveHalving(SPACE, 4, seed=0, min_epochs=50)


@pytest.mark.parametrize("failure", [-math.inf, None, math.nan])
def test_failed_trials_are_never_elites_nor_promoted(failure):
    evolution = strategies.Evolution(SPACE, 4, seed=3, population_size=4, elite_size=2)
    generation0 = ask_all(evolution)
    for trial, fitness in zip(generation0, [failure, 5.0, failure, failure]):
        evolution.tell(trial, fitness)
    generation1 = ask_all(evolution)
    assert len(generation1) == 3  # one elite (the only success) and three children
    assert evolution.population_history[0]["best_fitness"] == 5.0
    halving = strategies.SuccessiveHalving(SPACE, 4, seed=0, n_configs=9, min_epochs=2, max_epochs=18, eta=3)
    rung0 = ask_all(halving)
    for trial, fitness in zip(rung0, [0.5, failure, 0.7] + [failure] * 6):
        halving.tell(trial, fitness)
    assert [t.candidate for t in ask_all(halving)] == [rung0[2].candidate, rung0[0].candidate]


def test_successive_halving_promotes_the_best_with_more_epochs():
    halving = strategies.SuccessiveHalving(SPACE, 4, seed=0, n_configs=9, min_epochs=2, max_epochs=18, eta=3)
    rung0 = ask_all(halving)
    assert len(rung0) == 9 and {t.epochs for t in rung0} == {2}
    for trial in rung0:
        halving.tell(trial, fitness_of(trial) + trial.number * 1e-3)
    rung1 = ask_all(halving)
    best3 = sorted(rung0, key=lambda t: -(fitness_of(t) + t.number * 1e-3))[:3]
    assert [t.candidate for t in rung1] == [t.candidate for t in best3]
    assert {t.epochs for t in rung1} == {6} and {t.generation for t in rung1} == {1}
    for trial in rung1:
        halving.tell(trial, fitness_of(trial))
    rung2 = ask_all(halving)
    assert len(rung2) == 1 and rung2[0].epochs == 18
    halving.tell(rung2[0], 1.0)
    next_bracket = ask_all(halving)
    assert len(next_bracket) == 9 and {(t.bracket, t.epochs) for t in next_bracket} == {(1, 2)}


def test_successive_halving_says_when_no_trial_reaches_max_epochs():
    short = strategies.SuccessiveHalving(SPACE, 4, seed=0, n_configs=9, min_epochs=2, max_epochs=30, eta=3)
    assert short.warnings() == ["successive_halving: with n_configs 9 and eta 3 a bracket keeps one candidate "
                                "at 18 epochs, so no trial trains for max_epochs 30"]
    assert strategies.SuccessiveHalving(SPACE, 4, seed=0, n_configs=9, min_epochs=2, max_epochs=18).warnings() == []
    assert strategies.Evolution(SPACE, 4, seed=0).warnings() == []


def test_create_names_the_strategy():
    assert isinstance(strategies.create("random", SPACE, 4, 0), strategies.RandomSearch)
    with pytest.raises(ValueError, match="strategy: unknown strategy 'grid'"):
        strategies.create("grid", SPACE, 4, 0)
    with pytest.raises(ValueError, match="^eta: not a parameter of the evolution strategy; known: crossover_rate, "
                                         "elite_size, mutation_rate, population_size, tau$"):
        strategies.create("evolution", SPACE, 4, 0, eta=3)
    with pytest.raises(ValueError, match="^tau: not a parameter of the random strategy; known: none$"):
        strategies.create("random", SPACE, 4, 0, tau=1.0)


def test_hyperband_brackets_trade_many_short_trials_for_few_long_ones():
    hyperband = strategies.Hyperband(SPACE, 4, seed=0, min_epochs=2, max_epochs=18, eta=3)
    shapes = []
    while len(shapes) < 7:
        rung = ask_all(hyperband)
        shapes.append((rung[0].bracket, rung[0].generation, len(rung), {t.epochs for t in rung}))
        for trial in rung:
            hyperband.tell(trial, fitness_of(trial) + trial.number * 1e-3)
    # s_max = 2: brackets of 9 at 2 epochs, 5 at 6, 3 at 18; each halves by eta up to 18
    assert shapes == [(0, 0, 9, {2}), (0, 1, 3, {6}), (0, 2, 1, {18}),
                      (1, 0, 5, {6}), (1, 1, 1, {18}),
                      (2, 0, 3, {18}),
                      (3, 0, 9, {2})]
    assert hyperband.params() == {"strategy": "hyperband", "min_epochs": 2, "max_epochs": 18, "eta": 3}
    with pytest.raises(ValueError, match="n_configs: not a parameter of the hyperband strategy"):
        strategies.create("hyperband", SPACE, 4, 0, n_configs=9)


def test_hyperband_warns_when_its_brackets_pass_the_epoch_bound():
    hyperband = strategies.Hyperband(SPACE, 4, seed=0, min_epochs=2, max_epochs=18, eta=3)
    assert hyperband.warnings() == [] and hyperband.warnings(epoch_limit=18) == []
    assert hyperband.warnings(epoch_limit=10) == [
        "max_epochs: 18 asked, but on these rows a fold network trains at most 10 epochs (trials.epoch_bound), "
        "so the rungs above 10 train alike"]


def test_tpe_starts_with_the_random_search_samples():
    tpe = strategies.Tpe(SPACE, 4, seed=3, n_startup_trials=5)
    random = strategies.RandomSearch(SPACE, 4, seed=3)
    assert [tpe.ask().candidate for _ in range(5)] == [random.ask().candidate for _ in range(5)]


def test_tpe_waits_for_the_result_in_flight_trials_back():
    tpe = strategies.Tpe(SPACE, 4, seed=0, n_startup_trials=4, in_flight=2)
    startup = ask_all(tpe)[:4]
    assert [t.number for t in startup] == [0, 1, 2, 3] and tpe.ask() is None  # trial 4 needs trial 2's result
    tpe.tell(startup[0], 1.0)
    tpe.tell(startup[1], 2.0)
    assert tpe.ask() is None
    tpe.tell(startup[2], 3.0)
    assert tpe.ask().number == 4 and tpe.ask() is None  # trial 5 needs trial 3's


def test_tpe_proposes_the_same_trials_however_many_run_at_once():
    def run(at_once):
        tpe, pending, trials = strategies.Tpe(SPACE, 4, seed=5, n_startup_trials=6, in_flight=3), [], []
        while len(trials) < 30:
            while len(pending) < at_once and (trial := tpe.ask()) is not None:
                pending.append(trial)
            done = pending.pop(0)  # results come back in trial-number order
            tpe.tell(done, fitness_of(done))
            trials.append(done)
        return [(t.number, t.candidate) for t in trials]

    assert run(1) == run(2) == run(3)


def test_tpe_learns_where_the_fitness_is():
    """On a made-up fitness that wants a learning rate of 3e-3 and 7 neurons in the first unit,
    TPE's later trials score far better than random search's with the same seed."""
    def fitness(candidate):
        return -abs(math.log(candidate.learning_rate / 3e-3)) - abs(candidate.levels[0][0].neurons - 7) / 3

    def later_median(strategy):
        scores = []
        for _ in range(80):
            trial = strategy.ask()
            strategy.tell(trial, fitness(trial.candidate))
            scores.append(fitness(trial.candidate))
        return np.median(scores[40:])

    for seed in range(3):
        assert later_median(strategies.Tpe(SPACE, 4, seed, in_flight=1)) > \
            later_median(strategies.RandomSearch(SPACE, 4, seed)) + 0.5


def test_tpe_proposals_are_valid_and_within_the_space():
    space = SearchSpace.from_dict({"levels": [1, 3], "units_per_level": [1, 3], "neurons_per_unit": [4, 64],
                                   "weight_decay": 0, "normalization": ["dropout", "batchnorm"],
                                   "dropout": [0.1, 0.3], "activation": ["relu", "tanh"]})
    tpe = strategies.Tpe(space, 6, seed=1, n_startup_trials=3, in_flight=1)
    for _ in range(40):
        trial = tpe.ask()
        c = trial.candidate
        assert 1 <= len(c.levels) <= 3 and all(1 <= len(level) <= 3 for level in c.levels)
        assert all(4 <= u.neurons <= 64 for level in c.levels for u in level)
        assert c.weight_decay == 0 and c.activation in ("relu", "tanh")
        assert (0.1 <= c.dropout <= 0.3) if c.normalization == "dropout" else c.dropout == 0.0
        tpe.tell(trial, None if trial.number % 7 == 0 else c.learning_rate)  # some trials fail


@pytest.mark.parametrize("params, message", [
    ({"gamma": 1.0}, "gamma: must be a number between 0 and 1"),
    ({"in_flight": 0}, "in_flight: must be an integer from 1 to 1000"),
    ({"n_startup_trials": 0}, "n_startup_trials: must be an integer from 1 to 1000000"),
])
def test_tpe_settings_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        strategies.create("tpe", SPACE, 4, 0, **params)
