"""Scenario files: parsing, validation with precise errors, the bundled examples."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from markov_migration.errors import InputError
from markov_migration.inputs.scenario import (
    BASELINE,
    InflowChange,
    Scenario,
    load_scenario,
    parse_scenario,
    resolve_scenario,
)


def parse(text, spec, path="sc.toml"):
    return parse_scenario(textwrap.dedent(text), spec, path=path)


def test_bundled_ceasefire_doubles_every_return_and_halves_reemigration(migration5):
    sc = load_scenario("ceasefire-2026", migration5)
    assert sc.name == "ceasefire-2026"
    (phase,) = sc.phases
    assert phase.start == 2026.0 and phase.end is None
    i = migration5.index
    into_home = {p for p in migration5.transitions if p[1] == i("returned")}
    assert {p for p, m in phase.multipliers.items() if m == 2.0} == into_home
    assert phase.multipliers[(i("returned"), i("reemigrated"))] == 0.5
    assert phase.inflow is None
    sc.check_dates(2024.5, 2035.0)


def test_bundled_mobilization_wave_adds_inflow_for_one_year(migration5):
    sc = load_scenario("mobilization-wave", migration5)
    (phase,) = sc.phases
    assert (phase.start, phase.end) == (2025.7, 2026.7)
    assert phase.inflow == InflowChange("add", 150000.0)
    assert sc.inflow_at(2025.0, 20000.0) == 20000.0
    assert sc.inflow_at(2026.0, 20000.0) == 170000.0
    assert sc.inflow_at(2026.7, 20000.0) == 20000.0  # until is exclusive
    assert sc.change_points() == [2025.7, 2026.7]


def test_multiplier_matrix_and_times(migration5):
    sc = parse(
        """
        name = "x"
        from = 2026.0
        until = 2028.0
        [multipliers]
        "abroad->returned" = 3
        """,
        migration5,
    )
    k = migration5.n_states
    inside = sc.multipliers_at(2026.0, k)
    expected = np.ones((k, k))
    expected[migration5.index("abroad"), migration5.index("returned")] = 3.0
    np.testing.assert_array_equal(inside, expected)
    np.testing.assert_array_equal(sc.multipliers_at(2025.99, k), np.ones((k, k)))
    np.testing.assert_array_equal(sc.multipliers_at(2028.0, k), np.ones((k, k)))


def test_explicit_transition_overrides_wildcard(migration5):
    sc = parse(
        """
        from = 2026.0
        [multipliers]
        "*->returned" = 2.0
        "swing->returned" = 1.5
        """,
        migration5,
    )
    m = sc.phases[0].multipliers
    i = migration5.index
    assert m[(i("swing"), i("returned"))] == 1.5
    assert m[(i("abroad"), i("returned"))] == 2.0
    assert sc.name == "sc"  # from the file name


def test_phases_in_time_order(migration5):
    sc = parse(
        """
        name = "two"
        [[phase]]
        from = 2030.0
        [phase.multipliers]
        "abroad->returned" = 1.5

        [[phase]]
        from = 2026.0
        until = 2030.0
        [phase.multipliers]
        "abroad->returned" = 2.0
        [phase.inflow]
        multiplier = 0.5
        """,
        migration5,
    )
    assert [p.start for p in sc.phases] == [2026.0, 2030.0]
    assert sc.inflow_at(2027.0, 10000.0) == 5000.0
    assert sc.inflow_at(2031.0, 10000.0) == 10000.0


def test_baseline_has_no_changes():
    base = Scenario.baseline()
    assert base.name == BASELINE and base.phases == ()
    assert base.inflow_at(2030.0, 7.0) == 7.0
    np.testing.assert_array_equal(base.multipliers_at(2030.0, 3), np.ones((3, 3)))


def test_negative_add_never_makes_inflow_negative():
    assert InflowChange("add", -50.0).apply(20.0) == 0.0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            'name = "x"\nfrom = 2026.0\n[multipliers]\n"abroad->reemigrated" = 2.0\n',
            4,
            "'abroad->reemigrated' is not an allowed transition of model migration5",
        ),
        (
            'from = 2026.0\n[multipliers]\n"abroad->returned" = 2.0\n'
            '"returned->reemigrated" = -0.5\n',
            4,
            "multiplier of 'returned->reemigrated' must not be negative, got -0.5",
        ),
        (
            'from = 2026.0\n[multipliers]\n"abroad->home" = 2.0\n',
            3,
            "'home' is not a state of model migration5",
        ),
        (
            'from = 2026.0\n[multipliers]\n"abroad returned" = 2.0\n',
            3,
            "is not a transition of the form",
        ),
        (
            'from = 2026.0\n[multipliers]\n"abroad->returned" = "double"\n',
            3,
            "multiplier of 'abroad->returned' must be a number",
        ),
        ('name = "x"\nfrom = 2026.0\n[multipliers\n"a->b" = 1\n', 3, "TOML syntax error"),
        ('from = 2026.0\ncolour = "red"\n', 2, "unknown key 'colour'"),
        ('name = "baseline"\nfrom = 2026.0\n[inflow]\nadd = 1\n', 1, "reserved"),
        ("from = 2026.0\n[inflow]\nadd = 1\nper_year = 2\n", 2, "exactly one of"),
        ("from = 2026.0\n[inflow]\nmultiplier = -1\n", 3, "inflow multiplier must not be negative"),
        (
            "from = 2026.0\nuntil = 2025.0\n[inflow]\nadd = 1\n",
            2,
            "until = 2025 is not after from = 2026",
        ),
        ("from = 2026.0\n", 1, "changes nothing"),
    ],
)
def test_bad_scenarios_name_file_line_and_problem(migration5, text, line, message):
    with pytest.raises(InputError) as info:
        parse_scenario(text, migration5, path="bad.toml")
    err = info.value
    assert message in str(err)
    assert err.path == "bad.toml"
    assert err.line == line
    assert "\n" not in str(err)


def test_overlapping_phases_are_refused(migration5):
    text = """
    [[phase]]
    from = 2026.0
    [phase.inflow]
    add = 1000

    [[phase]]
    from = 2028.0
    [phase.inflow]
    add = 2000
    """
    with pytest.raises(InputError, match="phases overlap") as info:
        parse(text, migration5)
    assert info.value.line == 8


def test_missing_from_in_phase_points_at_the_phase(migration5):
    text = "[[phase]]\nuntil = 2030.0\n[phase.inflow]\nadd = 1\n"
    with pytest.raises(InputError, match="missing 'from'") as info:
        parse_scenario(text, migration5, path="p.toml")
    assert info.value.line == 1


@pytest.mark.parametrize(
    ("start", "until", "line"), [(2040.0, None, 2), (2020.0, None, 2), (2026.0, 2036.0, 3)]
)
def test_dates_outside_the_projection_are_refused(migration5, start, until, line):
    text = (
        f"name = 'x'\nfrom = {start}\n"
        + (f"until = {until}\n" if until else "")
        + "[inflow]\nadd = 5\n"
    )
    sc = parse_scenario(text, migration5, path="d.toml")
    with pytest.raises(InputError, match="outside the projection \\(2024.5 to 2035\\)") as info:
        sc.check_dates(2024.5, 2035.0)
    assert info.value.line == line


def test_start_on_the_first_day_is_allowed(migration5):
    sc = parse_scenario("from = 2024.5\n[inflow]\nadd = 5\n", migration5)
    sc.check_dates(2024.5, 2035.0)


def test_missing_file(migration5, tmp_path):
    with pytest.raises(InputError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml", migration5)


def test_resolve_bundled_and_paths(tmp_path):
    assert resolve_scenario("ceasefire-2026").name == "ceasefire-2026.toml"
    assert resolve_scenario(tmp_path / "x.toml") == tmp_path / "x.toml"
