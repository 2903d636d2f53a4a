"""Which respondents' histories a latent model cannot produce (layer 3).

A panel that a latent model gives probability zero whatever its parameters (a
record that no true state can have produced after the ones before it, e.g. a
censored code outside the states the respondent can reach, or a move out of an
absorbing state that no declared error explains) leaves nutpie without a finite
starting point: it fails with "All initialization points failed". The pure-panel
path refuses impossible pairs before fitting
(:func:`markov_migration.inputs.panel.check_possible`); a latent model's
likelihood judges a history as a whole, so the refusal comes when the sampler has
failed. :func:`impossible_histories` takes one prior draw (every intensity and
error probability positive, so a history with probability 0 there has
probability 0 at every draw) and names the respondents whose history
log-likelihood is ``-inf`` at it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from markov_migration.errors import InputError
from markov_migration.inference.latent_draws import history_loglik_draws
from markov_migration.inference.latent_layout import latent_layout

#: nutpie's message when no initial point has a finite log-density and gradient.
INIT_FAILED = "initialization points failed"


def impossible_histories(spec, model, context) -> InputError:
    """The one-line error for a latent fit whose sampler found no starting point.

    Parameters
    ----------
    spec : ModelSpec
    model : pymc.Model
        The latent model (:func:`markov_migration.inference.latent.build_latent_model`).
    context : tuple
        (histories, respondents, node of each, design, generators, misclassification
        effects), as :func:`markov_migration.inference.latent.latent_model_and_context`
        returns it.

    Returns
    -------
    InputError
        Naming the first respondent with an impossible history and how many there
        are; or, if every history is possible at a prior draw, saying that no
        starting point was found.
    """
    from markov_migration.inference.prior_draws import draw_prior

    names = [v.name for v in (*model.free_RVs, *model.deterministics)]
    draw = draw_prior(model, names, SimpleNamespace(chains=1, draws=1, seed=0))
    ll = history_loglik_draws(spec, latent_layout(spec), draw, *context)["histories"]
    bad = np.flatnonzero(~np.isfinite(ll.to_numpy().reshape(-1)))
    if not bad.size:
        return InputError(
            "the sampler found no starting point with a finite log-likelihood (nutpie: all "
            "initialization points failed); try another --seed or check the priors"
        )
    first = str(ll["respondent"].to_numpy()[bad[0]])
    return InputError(
        f"{bad.size} respondent(s) have a history the model gives probability 0 whatever "
        f"its rates, first '{first}': check their records against the model's "
        "[transitions], [misclassification] and [observation]"
    )


__all__ = ["INIT_FAILED", "impossible_histories"]
