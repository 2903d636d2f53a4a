"""Panels a latent model cannot take as they are: repeats after an exact entry, impossible histories.

- A record of an ``[observation] exact`` state after the respondent's first one in
  it (the simulator, and panels that keep recording the dead, repeat it at later
  waves) would read as a second exact entry, which has probability 0. Validation
  drops such records with a note; the log-likelihood of the repaired panel equals
  that of the panel written without them (exactly: the same histories).
- A history with probability 0 whatever the parameters (a move out of an
  absorbing state that no declared error explains) leaves nutpie with no finite
  starting point: the fit says so in one line (exit 2), naming the respondent,
  and writes nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.forward import loglik_and_grad
from markov_migration.inference.latent import latent_histories
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec

MODEL = """
name = "three"
states = ["a", "b", "c"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[observation]
exact = ["c"]
"""
ROWS = [  # id, time, state
    (1, 0.0, "a"), (1, 1.0, "b"), (1, 1.7, "c"), (1, 2.0, "c"), (1, 3.0, "c"),
    (2, 0.0, "b"), (2, 1.0, "a"), (2, 2.0, "a"),
    (3, 0.0, "a"), (3, 0.4, "c"), (3, 1.0, "c"),
]  # fmt: skip
Q = np.array([[-0.5, 0.3, 0.2], [0.4, -0.7, 0.3], [0.0, 0.0, 0.0]])


def _loglik(spec, df) -> tuple[float, list[str]]:
    panel = validate_panel(df, spec)
    hist = latent_histories(spec, panel)[0]
    ll, *_ = loglik_and_grad(Q[None], np.ones(3), np.eye(3), *hist)
    return ll, panel.notes


def test_records_after_an_exact_entry_are_dropped_with_a_note():
    spec = parse_spec(MODEL)
    df = pd.DataFrame(ROWS, columns=["id", "time", "state"])
    ll, notes = _loglik(spec, df)
    assert any("removed 3 records after an exact entry into c" in n for n in notes), notes
    first = df.drop(index=[3, 4, 10]).reset_index(drop=True)  # each respondent's first c only
    want, _ = _loglik(spec, first)
    assert np.isfinite(ll) and ll == want
    # by hand (msm's deathexact): entry into c at the recorded time from any state
    import pytest
    from scipy.linalg import expm

    # occupied just before it, P(gap)[from, :] Q_off[:, c]; gaps rounded to a day
    into_c = np.where(np.arange(3) == 2, 0.0, Q[:, 2])

    def p(gap):
        return expm(Q * np.round(gap / spec.resolution) * spec.resolution)

    hand = (np.log(p(1.0)[0, 1] * (p(0.7)[1] @ into_c)) + np.log(p(1.0)[1, 0] * p(1.0)[0, 0])
            + np.log(p(0.4)[0] @ into_c))  # fmt: skip
    assert ll == pytest.approx(hand, rel=1e-10)


def _impossible_panel(tmp_path):
    text = MODEL.replace('[observation]\nexact = ["c"]\n', '[misclassification]\na = ["b"]\n')
    (tmp_path / "m.toml").write_text(text)
    rows = [r for r in ROWS if r[0] != 3] + [(3, 0.0, "a"), (3, 0.4, "c"), (3, 1.0, "a")]
    pd.DataFrame(rows, columns=["id", "time", "state"]).to_csv(tmp_path / "p.csv", index=False)
    return parse_spec(text), tmp_path / "p.csv", tmp_path / "m.toml"


def test_impossible_histories_names_the_respondent(tmp_path):
    from markov_migration.inference.latent import latent_model_and_context
    from markov_migration.inference.latent_impossible import impossible_histories
    from markov_migration.inputs.aggregate import load_data

    spec, panel_path, _ = _impossible_panel(tmp_path)
    panel, agg = load_data(panel_path, spec)
    model, context = latent_model_and_context(spec, panel, agg)
    err = impossible_histories(spec, model, context)
    assert str(err).startswith("1 respondent(s) have a history the model gives probability 0")
    assert "first '3'" in str(err)
    ok = pd.read_csv(panel_path).query("id != 3")  # without it every history is possible
    ok.to_csv(tmp_path / "ok.csv", index=False)
    panel, agg = load_data(tmp_path / "ok.csv", spec)
    model, context = latent_model_and_context(spec, panel, agg)
    assert "no starting point" in str(impossible_histories(spec, model, context))


def test_the_fit_command_says_it_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    """The sampler is faked: nutpie's error on a model with no finite starting point."""
    import markov_migration.inference.latent as latent

    def no_start(*args, **kwargs):
        raise RuntimeError("All initialization points failed\n\nCaused by:\n...")

    monkeypatch.setattr(latent, "_sample", no_start)
    _, panel_path, model_path = _impossible_panel(tmp_path)
    out = tmp_path / "fit.nc"
    res = CliRunner().invoke(app, ["fit", str(panel_path), "--model", str(model_path),
                                   "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 2, (res.output, repr(res.exception))
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "first '3'" in lines[0] and not out.exists()
