"""Model files: the TOML parser, its defaults, and its error messages."""

from __future__ import annotations

import math
import textwrap
import tomllib

import numpy as np
import pytest

from markov_migration.errors import InputError, SpecError
from markov_migration.inputs.priors import DEFAULT_EXIT_RATE, DEFAULT_EXIT_SD, DEFAULT_SPLIT
from markov_migration.inputs.spec import DAY_IN_UNIT, load_rates, load_spec, parse_rates, parse_spec
from markov_migration.inputs.spec_tables import (
    DEFAULT_CONCENTRATION,
    DEFAULT_COVARIATE_SD,
    DEFAULT_GROUP_SD,
    DEFAULT_PRIOR_RATE,
    DEFAULT_PRIOR_SD,
)

MIGRATION5_STATES = ("abroad", "transit", "swing", "returned", "reemigrated")


def spec_of(text: str, path: str | None = "m.toml"):
    return parse_spec(textwrap.dedent(text), path=path)


# -- the default model ---------------------------------------------------------------


def test_default_model_states_transitions_home(migration5):
    s = migration5
    assert s.name == "migration5"
    assert s.time == "continuous"
    assert s.time_unit == "years"
    assert s.states == MIGRATION5_STATES
    assert s.n_states == 5
    assert s.transition_labels == (
        "abroad->transit", "abroad->swing", "abroad->returned",
        "transit->abroad", "transit->swing", "transit->returned",
        "swing->abroad", "swing->returned",
        "returned->reemigrated",
        "reemigrated->returned", "reemigrated->swing",
    )  # fmt: skip
    assert s.absorbing == ()
    assert s.home == ("returned",)
    assert s.path is not None and s.path.endswith("migration5.toml")
    assert 'name = "migration5"' in s.text


def test_default_model_priors_are_state_level(migration5):
    """migration5 states 'abroad' (5% leave a year) and leaves the rest to the built-in default."""
    assert migration5.priors == {}  # no per-move priors
    by_state = {p.state: p for p in migration5.exit_priors}
    assert set(by_state) == {r for r, _ in migration5.transitions}
    abroad = by_state[migration5.index("abroad")]
    assert abroad.mu == pytest.approx(math.log(-math.log1p(-0.05)))  # P(leave in 1 year) 5%
    assert abroad.sigma == pytest.approx(1.5) and abroad.split == (1.0, 1.0, 1.0)
    for r, prior in by_state.items():
        if r != migration5.index("abroad"):
            assert prior.mu == pytest.approx(math.log(0.2)) and prior.source == "default"


def test_default_model_rates_and_simulate_table(migration5):
    # Compared with the file read by tomllib directly: every rate lands on its (from, to).
    raw = tomllib.loads(migration5.text)
    assert len(migration5.rates) == len(raw["rates"]) == len(migration5.transitions)
    for label, value in raw["rates"].items():
        a, b = label.split("->")
        assert migration5.rates[(migration5.index(a), migration5.index(b))] == value
    assert migration5.simulation == raw["simulate"]


def test_default_resolution_is_one_day(migration5):
    assert migration5.resolution == pytest.approx(1 / 365.25)


def test_built_in_prior_when_no_priors_table(toy_model_text):
    # Every state gets the state-level default: total exit rate and a Dirichlet(1) split.
    s = spec_of(toy_model_text)
    assert s.priors == {}
    assert sorted(p for e in s.exit_priors for p in e.exits) == sorted(s.transitions)
    for e in s.exit_priors:
        assert e.mu == pytest.approx(math.log(DEFAULT_EXIT_RATE))
        assert e.sigma == DEFAULT_EXIT_SD
        assert e.split == (DEFAULT_SPLIT,) * len(e.exits)
        assert e.source == "default"


def test_name_defaults_to_file_stem(write_model):
    path = write_model('states = ["a", "b"]\n[transitions]\na = ["b"]\n', name="my-model.toml")
    assert load_spec(path).name == "my-model"
    assert parse_spec('states = ["a", "b"]\n[transitions]\na = ["b"]\n').name == "model"


# -- structure -----------------------------------------------------------------------


def test_three_state_model_with_absorbing_state(toy_model):
    s = load_spec(toy_model)
    assert s.states == ("well", "ill", "dead")
    assert s.absorbing == ("dead",)
    assert s.transitions == ((0, 1), (0, 2), (1, 0), (1, 2))
    assert s.home == ()
    allowed = s.allowed_matrix()
    assert allowed.tolist() == [[False, True, True], [True, False, True], [False, False, False]]


def test_a_single_target_may_be_a_string():
    s = spec_of('states = ["a", "b"]\n[transitions]\na = "b"\n')
    assert s.transitions == ((0, 1),)
    assert s.absorbing == ("b",)


def test_home_as_a_string():
    s = spec_of('states = ["a", "b"]\nhome = "b"\n[transitions]\na = "b"\nb = "a"\n')
    assert s.home == ("b",)


@pytest.mark.parametrize(("unit", "day"), sorted(DAY_IN_UNIT.items()))
def test_time_unit_sets_the_resolution(unit, day):
    s = spec_of(f'time_unit = "{unit}"\nstates = ["a", "b"]\n[transitions]\na = "b"\n')
    assert s.time_unit == unit
    assert s.resolution == pytest.approx(day)


def test_rate_matrix_rows_sum_to_zero(toy_model):
    s = load_spec(toy_model)
    q = s.rate_matrix()
    np.testing.assert_allclose(q.sum(axis=1), 0.0, atol=1e-15)
    assert q[0, 1] == 0.3 and q[0, 2] == 0.05 and q[1, 0] == 0.5 and q[1, 2] == 0.2
    np.testing.assert_allclose(np.diag(q), [-0.35, -0.7, 0.0])
    assert q[2].tolist() == [0.0, 0.0, 0.0]


def test_rate_matrix_of_the_default_model(migration5):
    q = migration5.rate_matrix()
    np.testing.assert_allclose(q.sum(axis=1), 0.0, atol=1e-14)
    assert (q[~np.eye(5, dtype=bool)] >= 0).all()
    assert (np.diag(q) < 0).all()
    # Zero where the model allows no move.
    assert (q[~migration5.allowed_matrix() & ~np.eye(5, dtype=bool)] == 0).all()


def test_rate_matrix_without_rates_table_is_an_error():
    s = spec_of('states = ["a", "b"]\n[transitions]\na = "b"\n')
    with pytest.raises(SpecError, match=r"^m\.toml: has no \[rates\] table"):
        s.rate_matrix()


def test_zero_rate_is_allowed():
    s = spec_of('states = ["a", "b"]\n[transitions]\na = "b"\nb = "a"\n[rates]\n"a->b" = 0\n')
    assert s.rates == {(0, 1): 0.0}
    assert s.rate_matrix().tolist() == [[0.0, 0.0], [0.0, 0.0]]


# -- priors --------------------------------------------------------------------------

PRIOR_BASE = """\
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a"]
[priors]
"""


def exit_prior(spec, state):
    (found,) = [e for e in spec.exit_priors if spec.states[e.state] == state]
    return found


def test_prior_as_rate():
    s = spec_of(PRIOR_BASE + '"a->b" = { rate = 0.5 }\n')
    assert s.priors[(0, 1)].mu == pytest.approx(math.log(0.5))
    assert s.priors[(0, 1)].sigma == DEFAULT_PRIOR_SD
    assert s.priors[(0, 1)].source == "rate = 0.5 per unit"
    # a's other exit is outside the transition prior: the state-level default, alone.
    assert exit_prior(s, "a").exits == ((0, 2),)
    assert exit_prior(s, "a").mu == pytest.approx(math.log(DEFAULT_EXIT_RATE))
    assert set(s.priors) == {(0, 1)}


def test_prior_as_mean_sojourn_of_a_transition():
    s = spec_of(PRIOR_BASE + '"b->a" = { mean_sojourn = 4, sd = 0.5 }\n')
    assert s.priors[(1, 0)].mu == pytest.approx(math.log(1 / 4))
    assert s.priors[(1, 0)].sigma == 0.5
    assert [e.state for e in s.exit_priors] == [0]  # b has no state-level prior left


def test_state_level_prior_is_on_the_total_exit_rate():
    # Leaving 'a' after 2 years on average: median total exit rate 0.5, split Dirichlet(1).
    s = spec_of(PRIOR_BASE + "a = { mean_sojourn = 2 }\n")
    a = exit_prior(s, "a")
    assert a.exits == ((0, 1), (0, 2))
    assert a.mu == pytest.approx(math.log(0.5))
    assert a.sigma == DEFAULT_EXIT_SD
    assert a.split == (1.0, 1.0)
    assert a.source == "mean_sojourn = 2 units"
    assert exit_prior(s, "b").mu == pytest.approx(math.log(DEFAULT_EXIT_RATE))
    assert s.priors == {}


def test_state_level_split_number_or_table():
    s = spec_of(PRIOR_BASE + "a = { rate = 1.0, split = 3 }\n")
    assert exit_prior(s, "a").split == (3.0, 3.0)
    s = spec_of(PRIOR_BASE + "a = { rate = 1.0, split = { c = 4 } }\n")
    assert exit_prior(s, "a").split == (DEFAULT_SPLIT, 4.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('a = { rate = 1.0 }\n"a->c" = { rate = 0.05 }\n', "give either a prior for the state"),
        ("a = { split = { b = 0 } }\n", "must be a positive number"),
        ("a = { split = { d = 1 } }\n", "'d' is not a declared state"),
        ("b = { split = { b = 1 } }\n", "'b' is not an exit of 'b'"),
        ('"a->b" = { rate = 1, split = 2 }\n', "'split' belongs to a state's prior"),
        ("default = { rate = 1, split = 2 }\n", "'split' belongs to a state's prior"),
    ],
)
def test_bad_state_level_priors(entry, message):
    with pytest.raises(SpecError, match=message):
        spec_of(PRIOR_BASE + entry)


def test_prior_as_probability_within():
    s = spec_of(PRIOR_BASE + '"a->c" = { probability = 0.3, within = 2 }\n')
    assert s.priors[(0, 2)].mu == pytest.approx(math.log(-math.log(1 - 0.3) / 2))
    assert s.priors[(0, 2)].source == "probability = 0.3 within 2 units"


def test_prior_probability_within_defaults_to_one_unit():
    s = spec_of(PRIOR_BASE + '"a->c" = { probability = 0.18 }\n')
    assert s.priors[(0, 2)].mu == pytest.approx(math.log(-math.log(0.82)))


def test_state_level_probability_is_about_leaving():
    s = spec_of(PRIOR_BASE + "a = { probability = 0.5, within = 3, sd = 0.7 }\n")
    a = exit_prior(s, "a")
    assert a.mu == pytest.approx(math.log(-math.log(0.5) / 3))
    assert a.sigma == 0.7
    assert a.source == "probability = 0.5 within 3 units"


def test_per_transition_default_covers_states_without_their_own_prior():
    s = spec_of(
        PRIOR_BASE + "default = { rate = 0.1, sd = 2.0 }\n" + "a = { rate = 1.0, sd = 0.7 }\n"
    )
    a = exit_prior(s, "a")  # the state's own prior wins over the per-transition default
    assert (a.exits, a.mu, a.sigma) == (((0, 1), (0, 2)), pytest.approx(0.0), 0.7)
    assert s.priors[(1, 0)].mu == pytest.approx(math.log(0.1))  # default, per transition
    assert s.priors[(1, 0)].sigma == 2.0
    assert s.priors[(1, 0)].source == "rate = 0.1 per unit"
    assert [e.state for e in s.exit_priors] == [0]


def test_transition_prior_with_default_inherits_its_missing_keys():
    s = spec_of(PRIOR_BASE + "default = { rate = 0.1, sd = 2.0 }\n" + '"a->c" = { rate = 0.05 }\n')
    assert s.priors[(0, 2)].mu == pytest.approx(math.log(0.05))
    assert s.priors[(0, 2)].sigma == 2.0  # sd not restated: the default's
    assert s.priors[(0, 1)].mu == pytest.approx(math.log(0.1))
    assert s.exit_priors == ()


def test_default_sd_only_keeps_the_default_rate():
    s = spec_of(PRIOR_BASE + "default = { sd = 0.5 }\n")
    assert s.priors[(1, 0)].mu == pytest.approx(math.log(DEFAULT_PRIOR_RATE))
    assert s.priors[(1, 0)].sigma == 0.5


# -- discrete time ---------------------------------------------------------------------


def test_discrete_mode_concentrations_and_resolution():
    s = spec_of(
        """\
        time = "discrete"
        states = ["a", "b", "c"]
        [transitions]
        a = ["b", "c"]
        b = ["a"]
        [priors]
        concentration = 2.0
        a = { concentration = 5 }
        "a->b" = { concentration = 3 }
        """
    )
    assert s.time == "discrete"
    assert s.resolution == 1.0
    assert s.concentration == {
        (0, 0): 5.0, (1, 1): 2.0, (2, 2): 2.0,
        (0, 1): 3.0, (0, 2): 2.0, (1, 0): 2.0,
    }  # fmt: skip


def test_discrete_mode_default_concentration():
    s = spec_of('time = "discrete"\nstates = ["a", "b"]\n[transitions]\na = "b"\n')
    assert set(s.concentration.values()) == {DEFAULT_CONCENTRATION}
    assert set(s.concentration) == {(0, 0), (1, 1), (0, 1)}


# -- [data] ----------------------------------------------------------------------------


def test_data_defaults(toy_model_text):
    s = spec_of(toy_model_text)
    assert (s.data.id, s.data.time, s.data.state) == ("id", "time", "state")
    assert s.data.weight is None and s.data.state_codes is None and s.data.resolution is None


def test_data_remapping_and_state_codes_true(toy_model_text):
    data = '[data]\nid = "PTNUM"\ntime = "years"\nstate = "where"\nweight = "w"\n'
    s = spec_of(toy_model_text + data + "state_codes = true\n")
    assert (s.data.id, s.data.time, s.data.state, s.data.weight) == ("PTNUM", "years", "where", "w")
    assert s.data.state_codes == {1: "well", 2: "ill", 3: "dead"}


def test_state_code_table(toy_model_text):
    s = spec_of(toy_model_text + '[data]\nstate_codes = { 10 = "well", 20 = "ill", 99 = "dead" }\n')
    assert s.data.state_codes == {10: "well", 20: "ill", 99: "dead"}


def test_state_codes_false_means_names(toy_model_text):
    assert spec_of(toy_model_text + "[data]\nstate_codes = false\n").data.state_codes is None


def test_data_resolution_overrides_the_default(toy_model_text):
    s = spec_of(toy_model_text + "[data]\nresolution = 0.25\n")
    assert s.resolution == 0.25


# -- covariates, groups, periods --------------------------------------------------------

COVARIATES = """\
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a"]
[covariates.age]
kind = "numeric"
transitions = ["a->b", "a->c"]
shared = [["a->b", "a->c"]]
[covariates.sex]
kind = "categorical"
levels = ["f", "m"]
reference = "m"
column = "gender"
prior_sd = 0.5
[covariates.country]
kind = "categorical"
"""


def test_covariates_numeric_and_categorical():
    age, sex, country = spec_of(COVARIATES).covariates
    assert (age.name, age.column, age.kind) == ("age", "age", "numeric")
    assert age.transitions == ((0, 1), (0, 2))
    assert age.shared == (((0, 1), (0, 2)),)
    assert age.reference is None and age.levels is None
    assert age.prior_sd == DEFAULT_COVARIATE_SD
    assert (sex.name, sex.column, sex.kind) == ("sex", "gender", "categorical")
    assert sex.levels == ("f", "m") and sex.reference == "m"
    assert sex.prior_sd == 0.5
    assert sex.shared == ()


def test_covariate_transitions_default_to_all():
    country = spec_of(COVARIATES).covariates[2]
    assert country.transitions == ((0, 1), (0, 2), (1, 0))
    assert country.reference is None and country.levels is None


def test_groups(toy_model_text):
    s = spec_of(
        toy_model_text + '[groups]\ncolumn = "host"\ntransitions = ["well->ill"]\nsd_prior = 0.3\n'
    )
    assert s.groups.column == "host"
    assert s.groups.transitions == ((0, 1),)
    assert s.groups.sd_prior == 0.3
    s = spec_of(toy_model_text + '[groups]\ncolumn = "host"\n')
    assert s.groups.transitions == s.transitions
    assert s.groups.sd_prior == DEFAULT_GROUP_SD
    assert spec_of(toy_model_text).groups is None


def test_periods_as_a_list_apply_to_all_transitions(toy_model_text):
    s = spec_of("periods = [2023.0, 2024.5]\n" + toy_model_text)
    assert s.periods == (2023.0, 2024.5)
    assert s.period_transitions == s.transitions


def test_periods_as_a_table(toy_model_text):
    s = spec_of('periods = { cuts = [2023, 2024], transitions = ["ill->well"] }\n' + toy_model_text)
    assert s.periods == (2023.0, 2024.0)
    assert s.period_transitions == ((1, 0),)


def test_no_periods(toy_model_text):
    s = spec_of(toy_model_text)
    assert s.periods == () and s.period_transitions == ()


# -- invalid model files: message and line ----------------------------------------------

BASE = """\
name = "toy"
states = ["well", "ill", "dead"]

[transitions]
well = ["ill", "dead"]
ill = ["well", "dead"]
"""

INVALID = [
    # (id, text, message fragment, line)
    (
        "toml-syntax",
        'name = "toy"\nstates = ["well", "ill"\n[transitions]\n',
        "TOML syntax error",
        3,
    ),
    (
        "time-mode",
        'time = "weekly"\n' + BASE,
        "unknown time mode 'weekly' (use 'continuous' or 'discrete')",
        1,
    ),
    ("time-unit", 'time_unit = "decades"\n' + BASE, "unknown time_unit 'decades'", 1),
    (
        "duplicate-state",
        BASE.replace('"dead"]\n\n', '"dead", "ill"]\n\n'),
        "duplicate state 'ill' in 'states'",
        2,
    ),
    ("empty-states", "states = []\n[transitions]\n", "'states' is empty", 1),
    ("one-state", 'states = ["a"]\n[transitions]\n', "a model needs at least two states", 1),
    ("no-states", "[transitions]\n", "missing 'states'", None),
    ("states-not-strings", "states = [1, 2]\n", "'states' must be a list of state names", 1),
    ("bad-state-name", 'states = ["a->b", "c"]\n', "invalid state name 'a->b'", 1),
    ("no-transitions", 'states = ["a", "b"]\n', "missing [transitions] table", None),
    (
        "undeclared-target",
        BASE.replace('ill = ["well", "dead"]', 'ill = ["well", "gone"]'),
        "[transitions] ill: 'gone' is not a declared state (states: well, ill, dead)",
        6,
    ),
    (
        "undeclared-origin",
        BASE + 'gone = ["well"]\n',
        "[transitions]: 'gone' is not a declared state",
        7,
    ),
    (
        "self-transition",
        BASE.replace('ill = ["well", "dead"]', 'ill = ["well", "ill"]'),
        "[transitions] ill: self-transition 'ill->ill'",
        6,
    ),
    (
        "listed-twice",
        BASE.replace('ill = ["well", "dead"]', 'ill = ["dead", "dead"]'),
        "[transitions] ill: 'dead' listed twice",
        6,
    ),
    (
        "no-move",
        'states = ["a", "b"]\n[transitions]\na = []\n',
        "[transitions] allows no move at all",
        2,
    ),
    (
        "unknown-top-level",
        BASE.replace('name = "toy"', 'name = "toy"\nstate = ["x"]'),
        "unknown top-level key 'state'",
        2,
    ),
    (
        "home-every-state",
        'home = ["well", "ill", "dead"]\n' + BASE,
        "'home' cannot list every state",
        1,
    ),
    ("home-undeclared", 'home = ["Russia"]\n' + BASE, "home: 'Russia' is not a declared state", 1),
    ("home-twice", 'home = ["ill", "ill"]\n' + BASE, "'home' lists a state twice", 1),
    (
        "prior-negative-rate",
        BASE + '[priors]\n"well->ill" = { rate = -1 }\n',
        "[priors] well->ill.rate must be a positive number, got -1",
        8,
    ),
    (
        "prior-probability-1",
        BASE + '[priors]\n"well->ill" = { probability = 1.0 }\n',
        "[priors] well->ill.probability must be below 1",
        8,
    ),
    (
        "prior-two-kinds",
        BASE + "[priors]\nwell = { rate = 1, mean_sojourn = 2 }\n",
        "[priors] well: give only one of rate, mean_sojourn",
        8,
    ),
    (
        "prior-unknown-key",
        BASE + '[priors]\n"ill->well" = { median = 1 }\n',
        "[priors] ill->well: unknown key 'median'",
        8,
    ),
    (
        "prior-not-a-table",
        BASE + '[priors]\n"ill->well" = 0.3\n',
        "[priors] ill->well must be a table",
        8,
    ),
    (
        "prior-bad-sd",
        BASE + "[priors]\ndefault = { sd = 0 }\n",
        "[priors] default.sd must be a positive number",
        8,
    ),
    (
        "prior-absorbing",
        BASE + "[priors]\ndead = { mean_sojourn = 3 }\n",
        "[priors] dead: state 'dead' is absorbing",
        8,
    ),
    (
        "prior-not-allowed",
        BASE + '[priors]\n"dead->well" = { rate = 1 }\n',
        "[priors]: 'dead->well' is not an allowed transition",
        8,
    ),
    (
        "prior-not-arrow",
        BASE + '[priors]\n"well-ill" = { rate = 1 }\n',
        "[priors]: 'well-ill' is not a declared state",
        8,
    ),
    (
        "covariate-kind",
        BASE + '[covariates.sex]\nkind = "binary"\n',
        "[covariates.sex]: kind must be 'numeric' or 'categorical', got 'binary'",
        7,
    ),
    (
        "covariate-no-kind",
        BASE + '[covariates.sex]\ncolumn = "gender"\n',
        "[covariates.sex]: kind must be 'numeric' or 'categorical', got None",
        7,
    ),
    (
        "covariate-reference",
        BASE + '[covariates.sex]\nkind = "categorical"\nlevels = ["f", "m"]\nreference = "x"\n',
        "[covariates.sex]: reference 'x' is not one of levels",
        10,
    ),
    (
        "covariate-numeric-levels",
        BASE + '[covariates.age]\nkind = "numeric"\nlevels = ["1", "2"]\n',
        "[covariates.age]: 'reference' and 'levels' apply to categorical covariates",
        7,
    ),
    (
        "covariate-one-level",
        BASE + '[covariates.sex]\nkind = "categorical"\nlevels = ["f"]\n',
        "[covariates.sex]: levels must list at least two levels",
        9,
    ),
    (
        "covariate-unknown-key",
        BASE + '[covariates.sex]\nkind = "categorical"\nrefrence = "f"\n',
        "[covariates.sex]: unknown key 'refrence'",
        9,
    ),
    (
        "covariate-bad-transition",
        BASE + '[covariates.age]\nkind = "numeric"\ntransitions = ["dead->ill"]\n',
        "[covariates.age].transitions: 'dead->ill' is not an allowed transition",
        9,
    ),
    (
        "covariate-shared-single",
        BASE + '[covariates.age]\nkind = "numeric"\nshared = [["well->ill"]]\n',
        "[covariates.age]: each shared set needs at least two transitions",
        9,
    ),
    (
        "covariate-shared-outside",
        BASE
        + '[covariates.age]\nkind = "numeric"\ntransitions = ["well->ill", "ill->well"]\n'
        + 'shared = [["well->ill", "well->dead"]]\n',
        "[covariates.age]: shared transition not in its transitions",
        10,
    ),
    (
        "groups-no-column",
        BASE + '[groups]\ntransitions = ["well->ill"]\n',
        "[groups] must be a table with a 'column'",
        7,
    ),
    (
        "groups-unknown-key",
        BASE + '[groups]\ncolumn = "host"\nsd = 1\n',
        "[groups]: unknown key 'sd'",
        9,
    ),
    (
        "periods-decreasing",
        "periods = [2024.0, 2023.0]\n" + BASE,
        "'periods' cut points must be strictly increasing",
        1,
    ),
    (
        "periods-equal",
        "periods = [2023.0, 2023.0]\n" + BASE,
        "'periods' cut points must be strictly increasing",
        1,
    ),
    (
        "periods-not-numbers",
        'periods = ["2023"]\n' + BASE,
        "periods must be a finite number, got '2023'",
        1,
    ),
    (
        "data-unknown-key",
        BASE + '[data]\nid_column = "PTNUM"\n',
        "[data]: unknown key 'id_column'",
        8,
    ),
    (
        "data-bad-code",
        BASE + '[data]\nstate_codes = { x = "well" }\n',
        "[data] state_codes: 'x' is not an integer code",
        8,
    ),
    (
        "data-code-state",
        BASE + '[data]\nstate_codes = { 1 = "sick" }\n',
        "[data] state_codes: 'sick' is not a declared state",
        8,
    ),
    (
        "data-codes-kind",
        BASE + '[data]\nstate_codes = "yes"\n',
        "[data] state_codes must be true",
        8,
    ),
    (
        "data-resolution",
        BASE + "[data]\nresolution = 0\n",
        "[data] resolution must be a positive number, got 0",
        8,
    ),
    (
        "rates-negative",
        BASE + '[rates]\n"well->ill" = -0.1\n',
        "[rates] well->ill must not be negative",
        8,
    ),
    (
        "rates-not-allowed",
        BASE + '[rates]\n"dead->ill" = 0.1\n',
        "[rates]: 'dead->ill' is not an allowed transition",
        8,
    ),
    (
        "rates-not-number",
        BASE + '[rates]\n"well->ill" = "fast"\n',
        "[rates] well->ill must be a finite number, got 'fast'",
        8,
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_model_files(text, fragment, line):
    with pytest.raises(SpecError) as info:
        parse_spec(text, path="bad.toml")
    err = info.value
    assert fragment in err.message
    assert err.line == line
    assert err.path == "bad.toml"
    # One line, naming the file (and the line when known) first.
    prefix = "bad.toml" if line is None else f"bad.toml, line {line}"
    assert str(err).startswith(f"{prefix}: ")
    assert "\n" not in str(err)


def test_spec_error_is_an_input_error():
    # The command line turns every InputError into one line and exit code 2.
    with pytest.raises(InputError):
        parse_spec('states = ["a"]\n')


def test_missing_model_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: model file not found"


def test_unreadable_model_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(SpecError, match="cannot read model file"):
        load_spec(path)


def test_error_line_in_the_default_model_layout(migration5, tmp_path):
    # A self-transition in the real default file is reported on its own line,
    # not on the 'states' line that mentions the same state first.
    lines = migration5.text.splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.startswith("swing = "))
    lines[row] = 'swing = ["abroad", "swing"]'
    with pytest.raises(SpecError) as info:
        parse_spec("\n".join(lines), path="migration5.toml")
    assert info.value.line == row + 1


# -- separate rates files (simulate --rates) ---------------------------------------------


def test_rates_file_is_read_like_the_models_rates_table(toy_model):
    spec = load_spec(toy_model)
    rates = parse_rates('[rates]\n"ill->dead" = 0.4\n"well->ill" = 0\n', spec, path="r.toml")
    # The file's table replaces the model's: only what it lists, in state indices.
    assert rates == {(1, 2): 0.4, (0, 1): 0.0}
    assert spec.rates[(1, 2)] == 0.2  # the spec itself is unchanged


def test_load_rates_reads_the_file(toy_model, tmp_path):
    path = tmp_path / "rates.toml"
    path.write_text('# known intensities\n[rates]\n"well->dead" = 1e-3\n', encoding="utf-8")
    assert load_rates(path, load_spec(toy_model)) == {(0, 2): 1e-3}


INVALID_RATES = [
    ("syntax", '[rates]\n"well->ill" = \n', "TOML syntax error: ", 2),
    (
        "unknown-state",
        '[rates]\n"well->moon" = 0.1\n',
        "[rates]: 'moon' is not a declared state",
        2,
    ),
    ("not-arrow", '[rates]\n"well" = 0.1\n', "'well' is not a transition of the form", 2),
    (
        "not-allowed",
        '[rates]\n"well->ill" = 0.1\n"dead->well" = 0.1\n',
        "[rates]: 'dead->well' is not an allowed transition in the model's [transitions] (",
        3,
    ),
    ("negative", '[rates]\n"well->ill" = -0.1\n', "[rates] well->ill must not be negative", 2),
    (
        "inf",
        '[rates]\n"well->ill" = inf\n',
        "[rates] well->ill must be a finite number, got inf",
        2,
    ),
    (
        "nan",
        '[rates]\n"well->ill" = nan\n',
        "[rates] well->ill must be a finite number, got nan",
        2,
    ),
    ("bool", '[rates]\n"well->ill" = true\n', "must be a finite number, got True", 2),
    ("not-a-table", "rates = 3\n", "[rates] must be a table", 1),
    ("empty", "# nothing\n[rates]\n", "[rates] is empty", 2),
    ("no-table", "", "has no [rates] table", None),
    ("other-key", 'states = ["a"]\n[rates]\n', "unknown top-level key 'states'", 1),
    ("bare-keys", '"well->ill" = 0.1\n', "unknown top-level key 'well->ill'", 1),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line"), [c[1:] for c in INVALID_RATES], ids=[c[0] for c in INVALID_RATES]
)
def test_invalid_rates_files(toy_model, text, fragment, line):
    spec = load_spec(toy_model)
    with pytest.raises(SpecError) as info:
        parse_rates(text, spec, path="rates.toml")
    err = info.value
    assert fragment in err.message
    assert (err.path, err.line) == ("rates.toml", line)  # the rates file, not the model file
    prefix = "rates.toml" if line is None else f"rates.toml, line {line}"
    assert str(err).startswith(f"{prefix}: ") and "\n" not in str(err)


def test_missing_rates_file(toy_model, tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SpecError) as info:
        load_rates(path, load_spec(toy_model))
    assert str(info.value) == f"{path}: rates file not found"


def test_model_file_message_for_a_disallowed_rate_is_unchanged():
    with pytest.raises(SpecError, match=r"is not an allowed transition in \[transitions\]$"):
        spec_of('states = ["a", "b"]\n[transitions]\na = "b"\n[rates]\n"b->a" = 1\n')
