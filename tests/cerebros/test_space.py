"""The Cerebros search space: validation, sampling rules, mutation, crossover, candidate round trips."""
import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from cerebros.space import Candidate, SearchSpace
from codec import FieldError


def rng(seed=0):
    return np.random.default_rng(seed)


def vertical_consumers(candidate):
    """{(level, unit): set of consumers} counting vertical and lateral edges."""
    used = {}
    for k, level in enumerate(candidate.levels, start=1):
        for i, unit in enumerate(level):
            for ref in unit.inputs:
                used.setdefault(ref, set()).add((k, i))
            for m in unit.lateral_inputs:
                used.setdefault((k, m), set()).add((k, i))
    for ref in candidate.output_inputs:
        used.setdefault(ref, set()).add((len(candidate.levels) + 1, 0))
    return used


def reaches_output(candidate):
    """Units from which some path leads to the output."""
    output = (len(candidate.levels) + 1, 0)
    consumers = vertical_consumers(candidate)
    reached = {output}
    for k in range(len(candidate.levels), 0, -1):
        for i in reversed(range(len(candidate.levels[k - 1]))):
            if consumers.get((k, i), set()) & reached:
                reached.add((k, i))
    return reached


def lateral_chain_lengths(level):
    depth = []
    for unit in level:
        depth.append(max((depth[m] + 1 for m in unit.lateral_inputs), default=0))
    return depth


def assert_valid(candidate, space):
    candidate.check()
    assert space.minimum_levels <= len(candidate.levels) <= space.maximum_levels
    reached = reaches_output(candidate)
    for k, level in enumerate(candidate.levels, start=1):
        assert space.minimum_units_per_level <= len(level) <= space.maximum_units_per_level
        assert max(lateral_chain_lengths(level), default=0) <= space.max_consecutive_lateral_connections
        for i, unit in enumerate(level):
            assert space.minimum_neurons_per_unit <= unit.neurons <= space.maximum_neurons_per_unit
            assert unit.inputs, f"unit {(k, i)} has no input"
            assert all(j < k for j, _ in unit.inputs)
            assert (k, i) in reached, f"unit {(k, i)} does not reach the output"
    assert candidate.output_inputs
    assert candidate.activation in space.activations
    assert candidate.normalization in space.normalizations
    assert space.minimum_learning_rate <= candidate.learning_rate <= space.maximum_learning_rate
    assert space.minimum_weight_decay <= candidate.weight_decay <= space.maximum_weight_decay
    assert space.minimum_batch_size <= candidate.batch_size <= space.maximum_batch_size
    assert space.minimum_epochs <= candidate.epochs <= space.maximum_epochs
    if candidate.normalization == "dropout":
        assert space.minimum_dropout <= candidate.dropout <= space.maximum_dropout
    else:
        assert candidate.dropout == 0.0
    assert Candidate.from_dict(json.loads(json.dumps(candidate.to_dict()))) == candidate


# ---- validation ---------------------------------------------------------------------------

BAD_FIELDS = [
    ("minimum_levels", -1), ("minimum_levels", "2"), ("minimum_levels", 1.5), ("minimum_levels", True),
    ("maximum_levels", 99), ("minimum_units_per_level", 0), ("maximum_units_per_level", None),
    ("minimum_neurons_per_unit", -3), ("maximum_neurons_per_unit", 10 ** 6),
    ("affinity_first", -1.0), ("affinity_first", "many"), ("affinity_main", math.nan),
    ("affinity_decay", 1.5), ("rounding", "round"), ("rounding", 3),
    ("p_lateral_connection", 1.2), ("p_lateral_connection", -0.1),
    ("max_consecutive_lateral_connections", -1), ("max_consecutive_lateral_connections", 2.5),
    ("minimum_skip_connection_depth", 0), ("maximum_skip_connection_depth", "7"),
    ("activations", ["elu", "sine"]), ("activations", []), ("activations", "elu"),
    ("minimum_learning_rate", 0.0), ("maximum_learning_rate", 100.0),
    ("minimum_weight_decay", -1e-3), ("maximum_weight_decay", [0.1]),
    ("minimum_batch_size", 0), ("maximum_batch_size", 3.7),
    ("minimum_epochs", 0), ("maximum_epochs", -5), ("patience", 0),
    ("normalizations", ["layernorm"]), ("normalizations", []),
    ("minimum_dropout", -0.1), ("maximum_dropout", 1.0),
]


@pytest.mark.parametrize("name,value", BAD_FIELDS)
def test_every_bad_field_is_rejected_by_name_and_value(name, value):
    with pytest.raises(FieldError) as info:
        SearchSpace.from_dict({name: value})
    message = str(info.value)
    assert name in message
    shown = value[-1] if isinstance(value, list) and value and name in ("activations", "normalizations") \
        else value
    assert repr(shown) in message or str(shown) in message


def test_every_field_of_the_space_is_covered_by_the_validation_cases():
    assert set(SearchSpace().to_dict()) == {name for name, _ in BAD_FIELDS}


@pytest.mark.parametrize("name", ["levels", "units_per_level", "neurons_per_unit", "skip_connection_depth",
                                  "learning_rate", "weight_decay", "batch_size", "epochs", "dropout"])
def test_minimum_above_maximum_is_rejected(name):
    low = {"learning_rate": 0.02, "weight_decay": 0.02, "dropout": 0.4}.get(name, 4)
    high = {"learning_rate": 0.01, "weight_decay": 0.01, "dropout": 0.2}.get(name, 3)
    with pytest.raises(FieldError, match=f"minimum_{name}.*greater than maximum_{name}"):
        SearchSpace.from_dict({f"minimum_{name}": low, f"maximum_{name}": high})


def test_a_weight_decay_step_that_would_flip_the_weights_sign_is_rejected():
    # each step scales the weights by 1 - learning_rate * weight_decay: at 1 or more it zeroes or flips them
    with pytest.raises(FieldError, match="^search_space.maximum_weight_decay: 10.0 times "
                                         "maximum_learning_rate 0.1 must be below 1"):
        SearchSpace.from_dict({"maximum_learning_rate": 0.1, "maximum_weight_decay": 10})
    assert SearchSpace.from_dict({"maximum_learning_rate": 0.09, "maximum_weight_decay": 10}).maximum_weight_decay == 10
    # in the short forms both fields are named as the caller wrote them, not as the space's ends
    with pytest.raises(FieldError, match="^search_space.weight_decay: 3.0 times learning_rate 0.5 must be below 1"):
        SearchSpace.from_dict({"learning_rate": 0.5, "weight_decay": 3})
    with pytest.raises(FieldError, match="^search_space.weight_decay: 3.0 times learning_rate 0.5 must be below 1"):
        SearchSpace.from_dict({"learning_rate": [0.001, 0.5], "weight_decay": [0.1, 3]})
    with pytest.raises(FieldError, match="^search_space.weight_decay: 3.0 times maximum_learning_rate 0.5 must"):
        SearchSpace.from_dict({"maximum_learning_rate": 0.5, "weight_decay": 3})
    # a value the caller wrote is quoted as written, even when it looks like a field's name
    for key, value, problem in (("learning_rate", "maximum_weight_decay", "expected a number, got str "),
                                ("rounding", "maximum_weight_decay", "must be one of ceil, floor, got "),
                                ("activation", "it's maximum_weight_decay", "unknown name ")):
        with pytest.raises(FieldError) as info:
            SearchSpace.from_dict({key: value, "weight_decay": 1})
        assert info.value.problem.startswith(problem + repr(value)), info.value.problem


def test_unknown_field_and_non_map_and_non_text_key_are_rejected():
    with pytest.raises(FieldError, match="^search_space.levles: unknown field; did you mean `levels`\\? known: ") \
            as info:
        SearchSpace.from_dict({"levles": 3})
    assert info.value.field == "search_space.levles" and "maximum_epochs" in info.value.problem
    with pytest.raises(FieldError, match="expected a map"):
        SearchSpace.from_dict([("minimum_levels", 1)])
    with pytest.raises(FieldError, match="must be text"):
        SearchSpace.from_dict({b"minimum_levels": 1})
    with pytest.raises(FieldError, match="given twice"):
        SearchSpace.from_dict({"levels": [1, 2], "minimum_levels": 1})
    with pytest.raises(FieldError, match=r"learning_rate: a range is \[minimum, maximum\]"):
        SearchSpace.from_dict({"learning_rate": [0.1, 0.2, 0.3]})


def test_weight_decay_may_be_zero_only_at_both_ends():
    assert SearchSpace.from_dict({"weight_decay": 0}).sample(rng(), 3).weight_decay == 0.0
    with pytest.raises(FieldError, match="minimum_weight_decay: 0 cannot start a log-uniform range"):
        SearchSpace.from_dict({"minimum_weight_decay": 0.0})


def test_short_forms_and_cerebros_names_map_to_fields_and_round_trip():
    space = SearchSpace.from_dict({
        "levels": [2, 4], "neurons_per_unit": 16, "learning_rate": 0.005, "activation": "elu",
        "normalization": ["none", "dropout"], "batch_size": [32, 64], "epochs": 7,
        "predecessor_level_connection_affinity_factor_first": 5,
        "predecessor_level_connection_affinity_factor_main": 0.7,
    })
    assert (space.minimum_levels, space.maximum_levels) == (2, 4)
    assert space.minimum_neurons_per_unit == space.maximum_neurons_per_unit == 16
    assert space.minimum_learning_rate == space.maximum_learning_rate == 0.005
    assert space.activations == ("elu",)
    assert space.normalizations == ("none", "dropout")
    assert space.affinity_first == 5.0
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    candidate = space.sample(rng(), 4)
    assert candidate.learning_rate == 0.005 and candidate.epochs == 7 and candidate.activation == "elu"


# ---- sampling -----------------------------------------------------------------------------

def test_predecessor_count_follows_the_affinity_decay_and_rounding_rule():
    ceil = SearchSpace(affinity_first=5.0, affinity_main=0.7, rounding="ceil")
    floor = SearchSpace(affinity_first=0.5, affinity_main=0.7, rounding="floor")
    assert ceil.predecessor_count(1, 0, 1) == 5           # first level: affinity_first * inputs
    assert ceil.predecessor_count(2, 1, 3) == 2           # ceil(0.7 * 0.7 * 3 = 1.47)
    assert ceil.predecessor_count(3, 1, 3) == 2           # ceil(0.7 * 0.49 * 3 = 1.029)
    assert ceil.predecessor_count(4, 0, 1) == 1           # ceil(0.168): every earlier level is reached
    assert ceil.predecessor_count(2, 1, 100) == 49        # 0.7 * 0.7 * 100 is 49, not 50
    assert floor.predecessor_count(1, 0, 1) == 0
    assert floor.predecessor_count(2, 1, 3) == 1
    assert floor.predecessor_count(4, 0, 1) == 0


def test_draws_per_level_are_exactly_the_rule_count_with_replacement():
    space = SearchSpace(affinity_main=3.0)
    widths = [1, 4, 2, 3]
    draws = space.draw_predecessors(rng(1), 4, widths)
    for j, width in enumerate(widths):
        from_j = [u for level, u in draws if level == j]
        assert len(from_j) == space.predecessor_count(4, j, width)
        assert all(0 <= u < width for u in from_j)


def test_ceil_rounding_connects_every_unit_to_every_earlier_level():
    space = SearchSpace(minimum_levels=3, maximum_levels=4, maximum_units_per_level=4)
    for seed in range(20):
        candidate = space.sample(rng(seed), 5)
        assert_valid(candidate, space)
        units = [(k, unit.inputs) for k, level in enumerate(candidate.levels, start=1) for unit in level]
        units.append((len(candidate.levels) + 1, candidate.output_inputs))
        for k, inputs in units:
            assert {j for j, _ in inputs} == set(range(k))


def test_floor_rounding_with_low_affinity_leaves_only_repair_wiring_within_the_skip_range():
    # every draw count is 0, so each unit gets one input from the level below (repair) and
    # orphans are wired exactly 2 levels up (or to the output, the nearest possible)
    space = SearchSpace(affinity_first=0.1, affinity_main=0.01, rounding="floor", p_lateral_connection=0.0,
                        minimum_levels=3, maximum_levels=5, minimum_skip_connection_depth=2,
                        maximum_skip_connection_depth=2)
    for seed in range(20):
        candidate = space.sample(rng(seed), 5)
        assert_valid(candidate, space)
        output_level = len(candidate.levels) + 1
        for k, level in enumerate(candidate.levels, start=1):
            for unit in level:
                assert len([j for j, _ in unit.inputs if j == k - 1]) == 1
                assert all(k - j in (1, 2) for j, _ in unit.inputs)
        assert all(output_level - j in (1, 2) or j == output_level - 1 for j, _ in candidate.output_inputs)


def test_lateral_chains_are_capped_and_happen_when_likely():
    longest = 0
    for cap in (0, 1, 2):
        space = SearchSpace(p_lateral_connection=1.0, max_consecutive_lateral_connections=cap,
                            minimum_units_per_level=5, maximum_units_per_level=6)
        for seed in range(10):
            candidate = space.sample(rng(seed), 3)
            assert_valid(candidate, space)
            chains = [max(lateral_chain_lengths(level)) for level in candidate.levels]
            assert max(chains) <= cap
            longest = max(longest, max(chains))
            if cap == 0:
                assert not any(unit.lateral_inputs for level in candidate.levels for unit in level)
    assert longest == 2


def test_sampling_is_deterministic_per_seed_and_varies_across_seeds():
    space = SearchSpace()
    assert space.sample(rng(7), 12) == space.sample(rng(7), 12)
    assert space.sample(rng(7), 12).key() == space.sample(rng(7), 12).key()
    assert len({space.sample(rng(seed), 12).key() for seed in range(20)}) == 20


def test_hyper_parameters_cover_their_ranges():
    space = SearchSpace()
    samples = [space.sample(rng(seed), 4) for seed in range(200)]
    rates = [c.learning_rate for c in samples]
    low, high = space.minimum_learning_rate, space.maximum_learning_rate
    assert min(rates) < 1.2 * low and max(rates) > high / 1.2   # log-uniform reaches both ends
    assert {c.activation for c in samples} == set(space.activations)
    assert {c.normalization for c in samples} == set(space.normalizations)
    assert {len(c.levels) for c in samples} == {0, 1, 2, 3}
    linear = next(c for c in samples if not c.levels)  # the floor: inputs straight to the output unit
    assert linear.output_inputs == ((0, 0),) and Candidate.from_dict(linear.to_dict()) == linear


# ---- candidates ---------------------------------------------------------------------------

def test_candidate_from_dict_rejects_broken_wiring():
    good = SearchSpace(minimum_levels=2, maximum_levels=2, minimum_units_per_level=2).sample(rng(), 3).to_dict()
    Candidate.from_dict(good)
    cases = [
        (lambda d: d["levels"][0][0].update(inputs=[]), "levels\\[0\\]\\[0\\].inputs: a unit needs"),
        (lambda d: d["levels"][0][0].update(inputs=[[1, 0]]), "is not a unit on an earlier level"),
        (lambda d: d["levels"][0][0].update(lateral_inputs=[0]), "not an earlier unit of the same level"),
        (lambda d: d.update(output_inputs=[[0, 0]]), "orphan"),
        (lambda d: d.update(activation="sine"), "activation: must be one of"),
        (lambda d: d.update(learning_rate=0), "learning_rate: must be > 0"),
        (lambda d: d.update(dropout=1.0), "dropout: must be < 1.0"),
        (lambda d: d.update(learning_rate=0.5, weight_decay=2.0),
         "weight_decay: 2.0 times learning_rate 0.5 must be below 1"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d.pop("epochs"), "missing field\\(s\\) epochs"),
        (lambda d: d["levels"][0][0].update(neurons="8"), "neurons: expected an integer"),
    ]
    for damage, message in cases:
        d = json.loads(json.dumps(good))
        damage(d)
        with pytest.raises(FieldError, match=message):
            Candidate.from_dict(d)


def test_key_is_stable_and_sensitive():
    candidate = SearchSpace().sample(rng(3), 6)
    again = Candidate.from_dict(json.loads(json.dumps(candidate.to_dict())))
    assert again.key() == candidate.key()
    changed = candidate.to_dict()
    changed["batch_size"] += 1
    assert Candidate.from_dict(changed).key() != candidate.key()


def test_repair_fixes_orphans_and_missing_inputs():
    space = SearchSpace(minimum_levels=3, maximum_levels=3, minimum_units_per_level=2)
    candidate = space.sample(rng(4), 3)
    first = candidate.levels[0]
    broken = dataclasses.replace(candidate, output_inputs=((3, 0),),
                                 levels=((dataclasses.replace(first[0], inputs=()),) + first[1:],)
                                 + candidate.levels[1:])
    with pytest.raises(FieldError):
        broken.check()
    repaired = space.repair(broken, rng(0))
    assert_valid(repaired, space)
    assert repaired.levels[0][0].inputs == ((0, 0),)


# ---- mutation and crossover ---------------------------------------------------------------

spaces = st.builds(
    lambda levels, units, lateral, rounding, skip, affinity: SearchSpace(
        minimum_levels=levels[0], maximum_levels=levels[0] + levels[1],
        minimum_units_per_level=units[0], maximum_units_per_level=units[0] + units[1],
        minimum_neurons_per_unit=2, maximum_neurons_per_unit=9,
        p_lateral_connection=lateral[0], max_consecutive_lateral_connections=lateral[1],
        rounding=rounding, minimum_skip_connection_depth=skip[0],
        maximum_skip_connection_depth=skip[0] + skip[1], affinity_main=affinity),
    st.tuples(st.integers(0, 3), st.integers(0, 2)), st.tuples(st.integers(1, 3), st.integers(0, 3)),
    st.tuples(st.floats(0, 1), st.integers(0, 3)), st.sampled_from(["ceil", "floor"]),
    st.tuples(st.integers(1, 3), st.integers(0, 3)), st.floats(0.05, 3.0),
)


@given(space=spaces, seed=st.integers(0, 2 ** 32 - 1), rate=st.floats(0, 1))
def test_mutation_gives_a_valid_different_candidate(space, seed, rate):
    generator = rng(seed)
    parent = space.sample(generator, 4)
    child = space.mutate(parent, generator, rate)
    assert_valid(child, space)
    assert child != parent


@given(space=spaces, seed=st.integers(0, 2 ** 32 - 1))
def test_crossover_gives_a_valid_candidate_built_from_the_parents(space, seed):
    generator = rng(seed)
    a, b = space.sample(generator, 4), space.sample(generator, 4)
    child = space.crossover(a, b, generator)
    assert_valid(child, space)
    assert len(child.levels) in (len(a.levels), len(b.levels))
    for name in ("activation", "learning_rate", "batch_size", "epochs", "weight_decay"):
        assert getattr(child, name) in (getattr(a, name), getattr(b, name))
    assert (child.normalization, child.dropout) in ((a.normalization, a.dropout), (b.normalization, b.dropout))
    for k, level in enumerate(child.levels):
        widths = {len(p.levels[k]) for p in (a, b) if k < len(p.levels)}
        assert len(level) in widths


def test_crossover_takes_the_dropout_rate_from_either_parent():
    space = SearchSpace(normalizations=("dropout",), minimum_dropout=0.1, maximum_dropout=0.5)
    a, b = space.sample(rng(1), 4), space.sample(rng(2), 4)
    assert a.dropout != b.dropout
    generator = rng(3)
    rates = {space.crossover(a, b, generator).dropout for _ in range(40)}
    assert rates == {a.dropout, b.dropout}


def test_mutation_and_crossover_are_deterministic_per_seed():
    space = SearchSpace()
    a, b = space.sample(rng(1), 8), space.sample(rng(2), 8)
    assert space.mutate(a, rng(5), 0.3) == space.mutate(a, rng(5), 0.3)
    assert space.crossover(a, b, rng(5)) == space.crossover(a, b, rng(5))


def test_crossover_rejects_parents_of_different_input_widths_and_mutation_a_bad_rate():
    space = SearchSpace()
    with pytest.raises(ValueError, match="n_inputs"):
        space.crossover(space.sample(rng(), 3), space.sample(rng(), 4), rng())
    with pytest.raises(FieldError, match="rate: must be <= 1.0"):
        space.mutate(space.sample(rng(), 3), rng(), 1.5)


@pytest.mark.parametrize("written,value,field", [
    ("activation", "sigmoidal", "search_space.activation"),            # a short form: one name
    ("activations", ["relu", "nope"], "search_space.activations"),
    ("levels", [1, 40], "search_space.levels"),                         # a short-form range
    ("minimum_levels", -1, "search_space.minimum_levels"),
    ("predecessor_level_connection_affinity_factor_main", -1.0,        # Cerebros's long name
     "search_space.predecessor_level_connection_affinity_factor_main"),
    ("normalization", 3, "search_space.normalization[0]"),
])
def test_errors_name_the_key_as_the_caller_wrote_it(written, value, field):
    with pytest.raises(FieldError) as info:
        SearchSpace.from_dict({written: value})
    assert info.value.field == field and str(info.value).startswith(field + ": ")
    assert info.value.kind == "invalid"
