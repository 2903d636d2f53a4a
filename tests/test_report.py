"""The HTML report: self-contained, with checks, plots, summaries and provenance."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.plots.report import render_report, write_report
from markov_migration.results.checks import run_checks
from markov_migration.testing import fake_fit, fake_posterior

THREE = """
# a comment with <b>markup</b> & an ampersand: must be escaped
name = "three"
states = ["a", "b", "c"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.05
initial = { a = 0.6, b = 0.4, c = 0.0 }
"""


class Collector(HTMLParser):
    """Every tag with its attributes, and the ids."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


@pytest.fixture(scope="module")
def tree(spec):
    return fake_fit(spec, simulate_panel(spec, 300, seed=51), chains=4, draws=250, spread=0.08)


@pytest.fixture(scope="module")
def html(tree):
    return render_report(tree, run_checks(tree, n_draws=100), fit_path="fits/three.nc")


def test_report_is_self_contained(html):
    parser = Collector()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    images = [a for t, a in parser.tags if t == "img"]
    assert len(images) >= 4  # transitions, prevalence, discrepancy, trace
    for t, attrs in parser.tags:
        for key in ("src", "href"):
            if key in attrs:
                value = attrs[key]
                assert value.startswith(("data:image/png;base64,", "#")), (t, value[:60])
    for img in images:
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert img.get("alt")
    assert "url(" not in html and "@import" not in html and "http://" not in html
    assert "https://" not in html


def test_report_sections_and_provenance(html, tree):
    parser = Collector()
    parser.feed(html)
    ids = {a.get("id") for _, a in parser.tags if a.get("id")}
    assert {"verdict", "checks", "convergence", "ppc", "summaries", "trace", "provenance"} <= ids
    assert "provenance-block" in ids
    block = html[html.index("id='provenance-block'") :]
    for needle in (
        tree.attrs["data_sha256"],
        "fits/three.nc",
        "Library versions",
        "Model file",
        "seed",
    ):
        assert needle in block
    # the model file is shown, escaped
    assert "&lt;b&gt;markup&lt;/b&gt; &amp; an ampersand" in block
    assert "<b>markup</b>" not in html
    assert "All checks passed" in html
    for title in (
        "Transition intensities Q",
        "Transition probabilities P(1 year)",
        "Mean sojourn time",
    ):
        assert title in html
    # every allowed intensity appears with an interval
    assert len(re.findall(r"class='ci'>\[", html)) >= 6 + 9 + 2


def test_report_shows_failed_checks(spec, tree):
    wrong = tree.copy()
    rates = 3 * np.array([spec.rates[p] for p in spec.transitions])
    wrong["posterior"] = xr.DataTree(fake_posterior(spec, rates, chains=2, draws=30, spread=0.05))
    wrong["sample_stats"] = tree["sample_stats"].isel(chain=slice(0, 2), draw=slice(0, 30))
    html = render_report(wrong, run_checks(wrong, n_draws=30))
    assert "class='verdict bad'" in html
    for name in ("ess_bulk", "ppc_transitions"):
        assert (
            name
            in html[html.index("id='verdict'") : html.index("</div>", html.index("id='verdict'"))]
        )
    assert "<td class='fail'>FAIL</td>" in html


def test_write_report(html, tmp_path):
    out = write_report(html, tmp_path / "r.html")
    assert out.read_text(encoding="utf-8") == html
    with pytest.raises(InputError, match="output exists"):
        write_report(html, out)


def test_summaries_per_group(tree):
    from markov_migration.plots.report import _summaries

    q = tree["posterior"]["Q"]
    grouped = xr.concat([q, 2 * q], dim=xr.DataArray(["GE", "DE"], dims="group", name="group"))
    post = tree["posterior"].to_dataset()
    post["Q"] = grouped.transpose("chain", "draw", "group", "from_state", "to_state")
    two = tree.copy()
    two["posterior"] = xr.DataTree(post)
    html = _summaries(two, 0.95)
    # Q, P(1) and sojourn for each group (no finite passage time to the home state "a")
    assert html.count("<h4>group = GE</h4>") == 3 and html.count("<h4>group = DE</h4>") == 3


def _chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="needs a headless Chromium")
def test_report_renders_in_headless_chromium(html, tmp_path):
    """The report renders: a screenshot from headless Chromium shows text and the plots."""
    import subprocess

    import matplotlib.image as mpimg

    page = write_report(html, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--window-size=1200,2400", f"--screenshot={shot}", page.resolve().as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "Chromium wrote no screenshot"
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2400, 1200)
    dark = (img.mean(axis=-1) < 0.5).mean()  # text, axes, markers (a blank page: 2e-5)
    coloured = (img.std(axis=-1) > 0.1).mean()  # badge, intervals, plot colours (blank: 0)
    assert dark > 0.005, f"the page looks blank ({dark:.4f} dark pixels)"
    assert coloured > 0.0005, f"no plots or colour on the page ({coloured:.4f})"
