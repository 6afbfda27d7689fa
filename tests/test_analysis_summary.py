"""Analysis in words (issue 23 item 4): summary(), the HTML repr, the short repr and plot().

Two real analyses: the dense route (a 324-weight head) and the Lanczos route (a 6480-weight
hidden layer, top 10 + the complement). The numbers printed must be the fields, the
complement's note must appear exactly when its share of the pair gap is over 25 %.
"""

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F
from own_models import fit
from torch import nn

import awbench as aw
from awbench.analysis import summary
from awbench.formatting import number


class Wide(nn.Module):
    """80 -> 80 (6480 weights with the bias: the Lanczos route) -> 4 (324: dense)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(80, 80)
        self.head = nn.Linear(80, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 80, generator=g, dtype=torch.float64)
    x[:, :4] += 1.5 * F.one_hot(y, 4)
    return x, y


@pytest.fixture(scope="module")
def analyses():
    torch.manual_seed(0)
    train, test = _data(120, 0), _data(60, 1)
    model = fit(Wide(), *train, steps=60, lr=0.3)
    dense = aw.analyze_model(model, "head", train, test, n_sharp=7)
    lanczos = aw.analyze_model(model, "fc", train, test, lanczos_k=10)
    assert dense.hessian_method == "dense" and dense.n_weights == 324
    assert lanczos.hessian_method == "lanczos+complement" and lanczos.n_weights == 6480
    assert len(lanczos.directions) == 10
    return {"dense": dense, "lanczos": lanczos}


ROWS = {  # the summary's row label -> the Analysis field it prints
    "real gap (test CE − train CE)": "real_gap",
    "pair gap ⟨Δl⟩": "pair_gap",
    "sharp part": "sharp_gap",
    "flat part": "flat_gap",
    "complement": "complement_gap",
    "estimate Σ c σg σw": "estimated_gap",
    "sharpness Σ σg²": "sharpness",
    "size Σ σw²": "size",
    "curvature": "curvature",
    "λ_max": "lam_max",
    "identity error": "identity_error",
    "duality error": "duality_error",
}
SHARES = ("sharp part", "flat part", "complement")


def _parse(text):
    """{row label: (value, percent or None)} read back from summary()."""
    out = {}
    for line in text.splitlines():
        for label in ROWS:
            m = re.match(rf"^\s+{re.escape(label)}\s+(\S+)(?:\s+(-?[\d.]+) %)?", line)
            if m:
                out[label] = (m.group(1), m.group(2) and float(m.group(2)))
    return out


@pytest.mark.parametrize("route", ["dense", "lanczos"])
def test_summary_numbers_are_the_fields(analyses, route):
    an = analyses[route]
    text = an.summary()
    parsed = _parse(text)
    assert set(parsed) == set(ROWS), text
    for label, name in ROWS.items():
        token, pct = parsed[label]
        field = getattr(an, name)
        # four significant digits, errors two: the token is the field, rounded
        digits = 2 if "error" in label else 4
        assert token == (f"{field:.1e}" if digits == 2 else f"{field:.4g}"), (label, token)
        assert float(token) == pytest.approx(field, rel=0.6 * 10 ** (1 - digits)), label
        if label in SHARES:
            assert pct == pytest.approx(100 * field / an.pair_gap, abs=0.051), label
    # the three shares add up to the pair gap (the identity), to the printed rounding
    assert sum(parsed[s][1] for s in SHARES) == pytest.approx(100, abs=0.2)
    assert f"{an.n_weights} weights" in text and f"{an.n_pairs} test samples" in text
    assert f"Route: {an.hessian_method}:" in text


def test_summary_names_the_route_and_the_sharp_count(analyses):
    dense, lanczos = (" ".join(analyses[r].summary().split()) for r in ("dense", "lanczos"))
    assert "top 7 directions by σg" in dense and "the other 317 directions" in dense
    assert "324 of 324 directions" in dense
    assert "the top 10 of 6480 eigen-directions by Lanczos" in lanczos
    assert summary.sharp_count(analyses["dense"]) == 7
    assert summary.sharp_count(analyses["lanczos"]) == 10  # the default n_sharp


def _with_complement_share(an, s):
    """``an`` with the complement at share ``s`` of the pair gap (flat part absorbing the rest)."""
    comp = s * an.pair_gap
    return dataclasses.replace(an, complement_gap=comp, flat_gap=an.pair_gap - an.sharp_gap - comp)


@pytest.mark.parametrize("route", ["dense", "lanczos"])
def test_complement_note_appears_exactly_when_the_complement_is_large(analyses, route):
    an = analyses[route]
    share = an.complement_gap / an.pair_gap
    assert ("The complement holds" in an.summary()) == (abs(share) > summary.COMPLEMENT_WARN)
    for s, expected in ((0.24, False), (0.26, True), (-0.3, True), (0.0, False)):
        text = _with_complement_share(an, s).summary()
        assert ("The complement holds" in text) == expected, (s, text)
    assert share == 0.0 if route == "dense" else share != 0.0


def test_large_complement_note_says_what_to_change(analyses):
    an = analyses["lanczos"]
    note = " ".join(summary.notes(_with_complement_share(an, 0.72)))
    assert "72 %" in note and "top 10 directions do not capture the gap" in note
    assert "lanczos_k=40" in note and "dense_max=6480" in note


def test_the_real_lanczos_case_warns_when_its_complement_is_large(analyses):
    an = analyses["lanczos"]
    large = abs(an.complement_gap / an.pair_gap) > 0.25
    assert large, "top 10 of 6480 directions: the complement should be large here"
    assert "Raise lanczos_k (now 10, e.g. lanczos_k=40)" in " ".join(an.summary().split())


def test_an_inexact_duality_or_identity_is_named(analyses):
    an = analyses["dense"]
    assert summary.notes(an) == []
    bad = dataclasses.replace(an, duality_error=0.75)
    (note,) = summary.notes(bad)
    assert "duality error (7.5e-01 nats) is not small" in note and "residual" in note
    assert "identity error" in " ".join(summary.notes(dataclasses.replace(an, identity_error=0.5)))


def test_html_repr_escapes_and_shows_the_same_numbers(analyses):
    an = dataclasses.replace(analyses["lanczos"], layer="<script>alert(1)</script>&")
    out = an._repr_html_()
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in out
    assert out.count("<table>") == 1 and out.count("</tr>") == len(summary.rows(an)) + 4
    for label, value, *_ in (r[1:] for r in summary.rows(an)):
        assert f"<code>{value}</code>" in out, label
    for label, name in ROWS.items():
        assert (
            f"<code>{number(getattr(an, name), summary.DIGITS)}</code>" in out or "error" in label
        )
    assert "The complement holds" in out  # the notes too, escaped
    assert "&lt;" in out and "<b>Note:</b>" in out


def test_short_repr_keeps_the_dataclass(analyses):
    an = analyses["dense"]
    text = repr(an)
    assert "\n" not in text and len(text) < 300 and text.startswith("Analysis(layer='head'")
    assert "directions=324/324" in text and "pair_gap=" in text and "eigenvectors" not in text
    assert len(dataclasses.fields(an)) > 27 and an.scalars()["n_weights"] == 324
    assert dataclasses.replace(an, layer="x").layer == "x"


@pytest.mark.parametrize("route", ["dense", "lanczos"])
def test_plot_is_the_budget_over_the_spectra(analyses, route):
    an = analyses[route]
    fig = an.plot()
    bar, *spectra = fig.data
    assert bar.type == "bar" and [t.type for t in spectra] == ["scatter"] * 4
    names = list(bar.x)
    assert names[:4] == [
        "real gap (test CE − train CE)",
        "pair gap ⟨Δl⟩ (exact identity)",
        "sharp part (top directions)",
        "flat part (other computed directions)",
    ]
    assert ("complement (beyond the computed directions)" in names) == (route == "lanczos")
    assert bar.y[1] == an.pair_gap
    assert all(len(t.x) == len(an.directions) for t in spectra)
    assert list(spectra[0].y) == list(an.directions.sort_values("rank")["sigma_g"])
    assert an.layer in fig.layout.title.text and an.hessian_method in fig.layout.title.text
