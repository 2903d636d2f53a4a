"""People leaving the population in a projection: exit rates, constant or by time.

An *exit* is a death or a move out of the population the projection counts
(e.g. naturalised and no longer counted as an emigrant). It is an absorbing
state outside home and diaspora, entered from each state at a yearly (per time
unit) rate that is the same for every state or given per state, and constant
or piecewise constant in time (a life-table series read from a CSV). Rates are
not estimated from the panel and are not changed by scenarios or periods.

Examples
--------
>>> from markov_migration.inputs.spec import load_spec
>>> from markov_migration.io import models_dir
>>> spec = load_spec(models_dir() / "migration5.toml")
>>> ExitRates.parse("abroad=0.01,returned=0.005", spec).rates_at(2030.0).tolist()
[0.01, 0.0, 0.0, 0.005, 0.0]
>>> float(ExitRates.parse("default", spec).rates_at(2030.0)[0]) == DEFAULT_EXIT_RATE
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from markov_migration.defaults import DEFAULT_EXIT_RATE, TIME_TOL
from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec
from markov_migration.projection.plan import read_csv

#: Largest exit rate accepted (per time unit): 100 a year empties a state within days.
MAX_EXIT_RATE = 100.0


@dataclass(frozen=True)
class ExitRates:
    """Piecewise-constant exit rates by state: ``rates[i]`` holds from ``times[i]`` on.

    Attributes
    ----------
    times : tuple of float
        Change times, increasing (time units; ``-inf`` for constant rates).
        ``rates[i]`` is in force from ``times[i]`` until ``times[i + 1]``, the
        last row to the horizon.
    rates : ndarray, shape (T, K)
        Exit rates per state (persons leaving per person and time unit).
    source : str
        How they were given (for provenance).
    """

    times: tuple[float, ...]
    rates: np.ndarray
    source: str

    # -- construction ---------------------------------------------------------------
    @classmethod
    def parse(
        cls, value: Mapping[str, float] | float | str | ExitRates | None, spec: ModelSpec
    ) -> ExitRates | None:
        """Exit rates from ``--exit-rate``: a number, ``state=rate,...``, ``default``, a mapping.

        ``default`` is :data:`~markov_migration.defaults.DEFAULT_EXIT_RATE` for
        every state (docs/projection.md gives its source). ``None`` or all
        rates 0: no exits.

        Raises
        ------
        InputError
            On an unknown state, or a rate that is negative, above
            :data:`MAX_EXIT_RATE` or not a finite number.
        """
        if value is None or isinstance(value, ExitRates):
            return value
        source = "--exit-rate"
        if isinstance(value, str):
            text = value.strip()
            source = f"--exit-rate {text}"
            if text.lower() == "default":
                value = DEFAULT_EXIT_RATE
                source = f"--exit-rate default ({DEFAULT_EXIT_RATE:g} per time unit, every state)"
            elif "=" not in text:
                try:
                    value = float(text)
                except ValueError:
                    raise InputError(
                        f"--exit-rate must be a number, state=rate,... or 'default', got '{text}'"
                    ) from None
            else:
                parsed: dict[str, float] = {}
                for item in text.split(","):
                    name, _, number = item.partition("=")
                    try:
                        parsed[name.strip()] = float(number)
                    except ValueError:
                        raise InputError(
                            f"--exit-rate: rate of '{name.strip()}' is not a number"
                        ) from None
                value = parsed
        if isinstance(value, Mapping):
            out = np.zeros(spec.n_states)
            for name, rate in value.items():
                out[_state(spec, name, "--exit-rate")] = float(rate)
        else:
            out = np.full(spec.n_states, float(value))
        _check_rates(out, "--exit-rate")
        return cls((-math.inf,), out[None, :], source)

    @classmethod
    def read_csv(cls, path: str | Path, spec: ModelSpec) -> ExitRates:
        """A life-table series from a CSV: ``time,rate`` (every state) or ``time,state,rate``.

        ``path`` may also name a bundled series (``models/exits/NAME.csv``, e.g.
        ``working-age-2022``). Times must increase (per state, with a
        ``state`` column, where every state named must have a rate at every
        time; states not named have rate 0). A rate holds from its time until
        the next; the first time must be at or before the projection start
        (checked by :meth:`check_window`).
        """
        path = resolve_exit_file(path)
        frame = read_csv(path, ("time", "rate"))
        per_state = "state" in frame.columns
        times = pd.to_numeric(frame["time"], errors="coerce")
        rates = pd.to_numeric(frame["rate"], errors="coerce")
        for i in range(len(frame)):
            t, r = times.iloc[i], rates.iloc[i]
            if pd.isna(t) or not math.isfinite(t):
                raise InputError(
                    f"time is not a number: '{frame['time'].iloc[i]}'",
                    path=path, row=i + 1, column="time",
                )  # fmt: skip
            if pd.isna(r) or not 0 <= r <= MAX_EXIT_RATE:
                raise InputError(
                    f"rate must be a number from 0 to {MAX_EXIT_RATE:g} per time unit, "
                    f"got '{frame['rate'].iloc[i]}'",
                    path=path, row=i + 1, column="rate",
                )  # fmt: skip
        if not per_state:
            values = times.to_numpy(dtype=float)
            if np.any(np.diff(values) <= 0):
                row = int(np.flatnonzero(np.diff(values) <= 0)[0]) + 2
                raise InputError("times must increase from row to row", path=path, row=row,
                                 column="time")  # fmt: skip
            table = np.repeat(rates.to_numpy(dtype=float)[:, None], spec.n_states, axis=1)
            return cls(tuple(values.tolist()), table, f"file {path}")
        states = frame["state"].astype(str).str.strip()
        for i, name in enumerate(states):
            _state(spec, name, "state", path=path, row=i + 1)
        grid = sorted(set(times.tolist()))
        table = np.zeros((len(grid), spec.n_states))
        seen: dict[str, set[float]] = {}
        for i, (name, t, r) in enumerate(zip(states, times, rates, strict=True)):
            if t in seen.setdefault(name, set()):
                raise InputError(f"state '{name}' has two rates at time {t:g}", path=path,
                                 row=i + 1, column="time")  # fmt: skip
            seen[name].add(t)
            table[grid.index(t), spec.index(name)] = r
        for name, ts in seen.items():
            missing = [t for t in grid if t not in ts]
            if missing:
                raise InputError(
                    f"state '{name}' has no rate at time {missing[0]:g} (every state named needs "
                    "a rate at every time of the file)",
                    path=path, column="state",
                )  # fmt: skip
        return cls(tuple(grid), table, f"file {path}")

    # -- use ------------------------------------------------------------------------
    def check_window(self, start: float) -> ExitRates:
        """Refuse a series that starts after the projection start (rates there unknown)."""
        first = self.times[0]
        if first > start + TIME_TOL:
            raise InputError(
                f"exit rates start at time {first:g}, after --start {start:g}: the first row of "
                "the exit file must be at or before the start"
            )
        return self

    @property
    def any(self) -> bool:
        """Whether any rate is above 0 (otherwise the run has no exit state)."""
        return bool(np.any(self.rates > 0))

    def change_points(self) -> list[float]:
        """Times at which the rates change (finite times after the first)."""
        return [float(t) for t in self.times[1:]]

    def rates_at(self, t: float) -> np.ndarray:
        """Exit rates (K,) in force just after time ``t``."""
        i = int(np.searchsorted(np.asarray(self.times), t + TIME_TOL, side="right")) - 1
        return self.rates[max(i, 0)]

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        """JSON-able description (for the projection's ``exit_rates`` attribute)."""
        rows = [
            {
                "from": None if not math.isfinite(t) else t,
                "per_time_unit": dict(zip(spec.states, r.tolist(), strict=True)),
            }
            for t, r in zip(self.times, self.rates, strict=True)
        ]
        return {
            "source": self.source,
            "rates": rows,
            "model": "absorbing exit state outside home and diaspora, entered at these rates "
            "(piecewise constant in time, each row from its time until the next); not "
            "estimated from the panel and not changed by scenarios or periods",
        }


def resolve_exit_file(name_or_path: str | Path) -> Path:
    """An exit-rate CSV path, or the name of a bundled series (``models/exits/NAME.csv``)."""
    from markov_migration.io import models_dir

    p = Path(name_or_path)
    if p.exists() or p.suffix or len(p.parts) > 1:
        return p
    bundled = models_dir() / "exits" / f"{p.name}.csv"
    return bundled if bundled.exists() else p


def _state(spec: ModelSpec, name: str, what: str, **where: Any) -> int:
    if name not in spec.states:
        known = ", ".join(spec.states)
        raise InputError(
            f"{what}: '{name}' is not a state of model {spec.name} (states: {known})", **where
        )
    return spec.index(name)


def _check_rates(values: np.ndarray, what: str) -> None:
    ok = np.isfinite(values) & (values >= 0) & (values <= MAX_EXIT_RATE)
    if not np.all(ok):
        bad = values[~ok][0]
        raise InputError(
            f"{what} must be >= 0 and at most {MAX_EXIT_RATE:g} per year (per time unit), "
            f"got {bad:g}"
        )
