"""The paper's claims, and how this run's records speak to them (the report's first table).

Each :class:`Claim` pairs a statement of the paper with a function from a notebook's records
to what this run measured. A record the notebook never wrote reads ``missing record: NAME``
(:data:`MISSING`), which the report shows in red; a recorded value that is not a finite
number reads n/a. Its verdict is either that of the claims it stands for in the confirmatory
family (``verdicts``: ids of :data:`awbench.experiments.claims.CLAIMS`, each with a short
label), or, for an identity, whether the check passes (``check``), or none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from awbench.experiments import record_names as rn
from awbench.formatting import formatted, signed_percent

MISSING = "missing record: "
# The pooled numbers the report computes over every notebook's runs, next to the records.
CROSS_RUN = "report.cross_run"
# The rendered claims table turns each of these into a red "fail" span.
MISSING_RE = re.compile(re.escape(MISSING) + r"[\w.\-]+")


def _num(r: dict, name: str, spec: str = ".3g") -> str:
    # n/a is for a recorded value that is not a finite number; a record the notebook never
    # wrote means the notebook and the report disagree on its name, which must show.
    if name not in r:
        return MISSING + name
    return formatted(r.get(name), spec)


def _pct(r: dict, name: str) -> str:
    if name not in r:
        return MISSING + name
    return signed_percent(r.get(name))


def _knob(r: dict, knob: str, label: str) -> str:
    def k(q: str) -> str:
        return rn.knob_record(knob, q)

    verdict = r.get(k(rn.VERDICT), "")
    return (
        f"{label}: sharpness {_pct(r, k(rn.SHARPNESS_CHANGE))}, size {_pct(r, k(rn.SIZE_CHANGE))}, "
        f"real gap {_pct(r, k(rn.REAL_GAP_CHANGE))}" + (f" — {verdict}" if verdict else "")
    )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p) or "not measured in this run"


# A check passes when its error is below this: rounding in float64 is 1e-17 to 1e-14, a broken
# duality misses by 0.1 nats or more (the analysis' own DUALITY_RTOL).
CHECK_TOL = 1e-6


def _below(*names: str) -> Callable[[dict], bool | None]:
    """A check that every record of ``names`` is at most :data:`CHECK_TOL` (None: one of
    them missing or not a finite number)."""

    def check(r: dict) -> bool | None:
        values = [r.get(n) for n in names if n in r]
        if len(values) < len(names) or not all(_finite(v) for v in values):
            return None
        return all(abs(v) <= CHECK_TOL for v in values)

    return check


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _minimal_and_linear(r: dict) -> bool | None:
    """ΔW* the smallest of the family (norm ratio >= 1) and linear in W."""
    linear = _below(rn.LINEARITY_DEVIATION)(r)
    ratio = r.get(rn.FAMILY_MIN_NORM_RATIO)
    if linear is None or not _finite(ratio):
        return None
    return linear and ratio >= 1 - CHECK_TOL


def _knob_verdicts(knob: str, label: str, *hypotheses: tuple[str, str]):
    """The paper's "acts on the factors" claim about ``knob`` and our hypotheses about it."""
    return (
        (f"paper.{knob}.acts_on_factors", f"{label} acts on the factors (paper)"),
        *((f"hyp.{knob}.{q}", text) for q, text in hypotheses),
    )


@dataclass(frozen=True)
class Claim:
    notebook: str  # stem, e.g. "01_duality"
    claim: str  # the paper's statement (docs/science.md sections 1, 3, 7)
    measured: Callable[[dict], str]  # records -> what this run measured
    #: (claim id of awbench.experiments.claims.CLAIMS, short label) whose verdicts this row shows
    verdicts: tuple[tuple[str, str], ...] = ()
    #: an identity: records -> passes (True), fails (False) or not measured (None)
    check: Callable[[dict], bool | None] | None = None


CLAIMS: list[Claim] = [
    Claim(
        "01_duality",
        "A change of activity is reproduced exactly by a change of weights: "
        "loss(x′, W) = loss(x, W + ΔW*) for every pair, at any layer (section 1).",
        lambda r: (
            f"worst logit error over all layers {_num(r, rn.DUALITY_ERROR, '.1e')} in float64 "
            f"({_num(r, rn.FLOAT32_LOGIT_ERROR, '.1e')} in float32)"
        ),
        check=_below(rn.DUALITY_ERROR),
    ),
    Claim(
        "01_duality",
        "ΔW* is the smallest dual weight, and it is linear in W, so the dual weights' spread "
        "scales with the weight norm (section 1).",
        lambda r: (
            f"smallest norm ratio of any family member to ΔW*: {_num(r, rn.FAMILY_MIN_NORM_RATIO, '.6f')}; "
            f"ΔW*(sW) = s ΔW*(W) to {_num(r, rn.LINEARITY_DEVIATION, '.1e')}"
        ),
        check=_minimal_and_linear,
    ),
    Claim(
        "00_tour",
        "Check, exact by construction: the generalization gap decomposes as Σₙ μg μw + c σg σw "
        "over the Hessian's eigen-directions (any orthonormal basis would do; section 3).",
        lambda r: (
            f"identity error {_num(r, rn.IDENTITY_ERROR, '.1e')} (rounding); exact pair gap "
            f"{_num(r, rn.PAIR_GAP, '.4g')} vs real gap {_num(r, rn.REAL_GAP, '.4g')} nats"
        ),
        check=_below(rn.IDENTITY_ERROR),
    ),
    Claim(
        "03_gap_decomposition",
        "Each direction contributes sharpness σg × size σw; the sharp directions "
        "(top 10 by σg) carry the gap (section 3).",
        lambda r: (
            f"top-10 share of the exact gap {_num(r, rn.SHARP_SHARE, '.1%')}; σg vs λ Spearman "
            f"{_num(r, rn.SPEARMAN_SIGMA_G_LAM, '.2f')}, σg/σw vs λ {_num(r, rn.SPEARMAN_RATIO_LAM, '.2f')}; "
            f"identity error at every layer ≤ {_num(r, rn.IDENTITY_ERROR_ALL_LAYERS, '.1e')}; "
            f"control, top-10 share: Hessian basis {_num(r, rn.TOP_SHARE_HESSIAN, '.1%')}, "
            f"dual weights' principal axes (no Hessian) {_num(r, rn.TOP_SHARE_DUAL_PCA, '.1%')}, "
            f"random basis {_num(r, rn.TOP_SHARE_RANDOM, '.1%')}; curvature part "
            f"sharpness/size {_num(r, rn.CURVATURE, '.3g')}"
        ),
    ),
    Claim(
        "03_gap_decomposition",
        "Dropping the mean terms costs little and c_n is roughly constant, so ΔL ≈ Σ c σg σw "
        "(section 3; the identity itself is a check, not a finding).",
        lambda r: (
            f"mean term Σμgμw {_num(r, rn.MEAN_TERM_SHARE, '.1%')} of the pair gap here, at most "
            f"{_num(r, rn.SEEDS_MEAN_TERM_SHARE_MAX, '.1%')} over seeds; c_n over the top 10 "
            f"directions {_num(r, rn.C_TOP_MEAN, '.2f')} ± {_num(r, rn.C_TOP_SD, '.2f')} (sd); "
            f"Σcσσ against the real gap: median relative error over seeds "
            f"{_num(r, rn.SEEDS_ESTIMATE_REL_ERROR, '.1%')}"
        ),
    ),
    Claim(
        "02_hessian_and_landscape",
        "Sharpness is a property of the loss landscape: large curvature along "
        "few directions (figure 7).",
        lambda r: (
            f"top Hessian eigenvalue {_num(r, rn.LAM_MAX, '.4g')}; "
            f"trace {_num(r, rn.TRACE, '.4g')} ± {_num(r, rn.TRACE_SE, '.2g')}; "
            f"quadratic model ½λt² matches the slice curvature to "
            f"{_num(r, rn.SLICE_CURVATURE_REL_ERROR, '.1e')}"
        ),
    ),
    Claim(
        "04_sgd_batch_and_lr",
        "SGD batch size and learning rate act on the geometric factors (section 7; the "
        "directions, larger batch or smaller learning rate → sharper, are our hypotheses).",
        lambda r: _join(_knob(r, "batch_size", "batch size ↑"), _knob(r, "lr", "learning rate ↑")),
        verdicts=(
            *_knob_verdicts("batch_size", "batch size", ("sharpness", "batch size ↑ → sharper")),
            *_knob_verdicts("lr", "learning rate", ("sharpness", "learning rate ↑ → flatter")),
        ),
    ),
    Claim(
        "05_weight_decay_and_init_scale",
        "Weight decay acts on the factors (section 7; our hypotheses: weight decay → smaller, "
        "larger init → larger).",
        lambda r: _join(
            _knob(r, "weight_decay", "weight decay ↑"),
            _knob(r, "init_scale", "init scale ↑"),
            f"size vs weight norm: Spearman {_num(r, rn.SIZE_NORM_RHO, '.2f')}, log-log slope "
            f"{_num(r, rn.SIZE_NORM_SLOPE, '.2f')}",
        ),
        verdicts=(
            *_knob_verdicts("weight_decay", "weight decay", ("size", "weight decay ↑ → smaller")),
            ("hyp.init_scale.size", "init scale ↑ → larger"),
        ),
    ),
    Claim(
        "06_dropout",
        "Dropout acts on one or both factors (section 7).",
        lambda r: _knob(r, "dropout", "dropout ↑"),
        verdicts=_knob_verdicts("dropout", "dropout", ("real_gap", "dropout ↑ → smaller gap")),
    ),
    Claim(
        "07_data_size_and_label_noise",
        "More data and label noise act on the factors (plausible: more data "
        "→ smaller size; label noise → both grow: our hypotheses) (section 7).",
        lambda r: _join(
            _knob(r, "n_train", "training set ↑"), _knob(r, "label_noise", "label noise ↑")
        ),
        verdicts=(
            *_knob_verdicts("n_train", "training-set size", ("size", "more data → smaller")),
            *_knob_verdicts(
                "label_noise",
                "label noise",
                ("sharpness", "label noise ↑ → sharper"),
                ("size", "label noise ↑ → larger"),
            ),
        ),
    ),
    Claim(
        "04_sgd_batch_and_lr",
        "Flatter and smaller solutions generalize better: sharpness and size act together "
        "(section 7). Tested across every converged run of the knob sweeps (04–07).",
        lambda r: str(r.get(CROSS_RUN, "no knob sweeps: no runs to test it on")),
        verdicts=(("paper.flatter_smaller", "gap grows with sharpness and size (paper)"),),
    ),
]
