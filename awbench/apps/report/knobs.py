"""The numbers across notebooks behind the report's knob tables and summary figures: the
knob sweeps read back from the records, their verdicts (pooled over every knob, Holm
corrected), convergence per knob and the paper's values a profile did not run."""

from __future__ import annotations

import html

from awbench.apps.report.html import fmt_value
from awbench.apps.report.pages import NotebookPage
from awbench.experiments import record_names as rn
from awbench.status import CONVERGED

KNOB_ORDER = list(rn.KNOBS)


def knob_rows(pages: list[NotebookPage]) -> list[dict]:
    """One row per knob found in the records: values, changes of sharpness, size, gap, verdict."""
    records: dict = {}
    for p in pages:
        records.update(p.records)
    rows = []
    # A knob sweep records its values; notebook 08's panel records changes along its grid
    # ("knobs.<knob>.sharpness_change") but is no sweep and has no row here.
    found = {rn.knob_of(k, rn.SHARPNESS_CHANGE) for k in records} - {None}
    found = {k for k in found if rn.knob_record(k, rn.VALUES) in records}
    for knob in KNOB_ORDER + sorted(found - set(KNOB_ORDER)):
        if knob not in found:
            continue

        def k(q: str, knob: str = knob) -> str:
            return rn.knob_record(knob, q)

        vals = records.get(k(rn.VALUES), [])
        rows.append(
            {
                "knob": knob,
                "values": ", ".join(fmt_value(v) for v in vals)
                if isinstance(vals, list)
                else str(vals),
                "seeds": records.get(k(rn.N_SEEDS)),
                "sharpness": records.get(k(rn.SHARPNESS_CHANGE)),
                "size": records.get(k(rn.SIZE_CHANGE)),
                "curvature": records.get(k(rn.CURVATURE_CHANGE)),
                "weight_norm": records.get(k(rn.WEIGHT_NORM_CHANGE)),
                "real_gap": records.get(k(rn.REAL_GAP_CHANGE)),
                "gap_low": records.get(k(rn.REAL_GAP_LOW)),
                "gap_high": records.get(k(rn.REAL_GAP_HIGH)),
                "verdict": records.get(k(rn.VERDICT), ""),
            }
        )
    return rows


def all_runs(pages: list[NotebookPage]):
    """Every run of every knob sweep, from the ``<knob>.runs`` records, as one DataFrame."""
    import pandas as pd

    frames = []
    for p in pages:
        for name, value in p.records.items():
            knob = rn.knob_of(name, rn.RUNS)
            if knob in KNOB_ORDER and isinstance(value, dict) and value.get("real_gap"):
                frame = pd.DataFrame(value)
                frame.insert(0, "knob", knob)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def knob_sweeps(pages: list[NotebookPage]) -> dict:
    """``{knob: runs}`` from the ``<knob>.runs`` records, with the knob's own column, as
    :func:`awbench.experiments.verdicts.verdict_table` wants them."""
    runs = all_runs(pages)
    if runs is None:
        return {}
    out = {}
    for knob, frame in runs.groupby("knob", sort=False):
        frame = frame.drop(columns=["knob"]).rename(columns={"value": knob})
        if "status" not in frame:  # records of an older notebook: nothing says it converged
            frame["status"] = "unknown"
        out[knob] = frame.reset_index(drop=True)
    return {k: out[k] for k in KNOB_ORDER if k in out}


def dpsgd_comparisons(pages: list[NotebookPage]) -> dict:
    """Paired DPSGD-against-SSGD comparisons per quantity from notebook 09's per-seed records
    (:func:`awbench.experiments.claims.algorithm_comparisons`)."""
    import pandas as pd

    from awbench.experiments.claims import algorithm_comparisons

    records: dict = {}
    for p in pages:
        records.update(p.records)
    pairs = records.get(rn.MULTILEARNER_PAIRS)
    if not isinstance(pairs, dict) or not pairs.get("seed"):
        return {}
    return algorithm_comparisons(pd.DataFrame(pairs))


def profile_of(pages: list[NotebookPage]) -> str:
    """The profile the notebooks ran with ("quick" when none says)."""
    return next(
        (str(p.parameters["profile"]) for p in pages if p.parameters.get("profile")), "quick"
    )


def noise_evidence(pages: list[NotebookPage]) -> dict:
    """The follow-up's per-seed numbers from notebook 11's records (the ``noise`` evidence of
    :func:`awbench.experiments.claims.claim_verdicts`); empty without them."""
    records: dict = {}
    for p in pages:
        records.update(p.records)
    names = {
        "gamma_ce": rn.NOISE_GAMMA_CE,
        "gamma_mse": rn.NOISE_GAMMA_MSE,
        "commutator": rn.NOISE_COMMUTATOR,
        "commutator_baseline": rn.NOISE_COMMUTATOR_BASELINE,
    }
    out = {key: records.get(name) for key, name in names.items()}
    return {k: list(v) for k, v in out.items() if isinstance(v, (list, tuple))}


def verdict_tables(pages: list[NotebookPage]):
    """(verdict table over every knob, claims table) or (None, None) with neither knob sweeps
    nor notebook 11's noise records.

    The table is corrected for the profile's whole family of cells, as each notebook's own
    verdicts are, so both say the same for the same runs."""
    from awbench.experiments.claims import claim_verdicts, cross_run_fit
    from awbench.experiments.grids import verdict_family
    from awbench.experiments.verdicts import verdict_table

    sweeps = knob_sweeps(pages)
    noise = noise_evidence(pages)
    if not sweeps and not noise:
        return None, None
    profile = profile_of(pages)
    table = verdict_table(sweeps, family=verdict_family(profile))
    runs = all_runs(pages)
    claims = claim_verdicts(
        table,
        comparisons=dpsgd_comparisons(pages) or None,
        across_runs=cross_run_fit(runs) if runs is not None else None,
        noise=noise or None,
    )
    return table, claims


def paper_values_left_out(knob: str, values_run) -> list:
    """The paper's values of ``knob`` (scaled to the digits, as the sweep presets do) that
    this run did not sweep: a quick profile runs fewer values, and the report says which."""
    from awbench.config import Config
    from awbench.experiments.grids import PAPER_VALUES, knob_values

    if knob not in PAPER_VALUES:
        return []
    run = {round(float(v), 9) for v in values_run}
    return [
        v
        for v in knob_values(knob, "paper", Config.preset("paper"))
        if round(float(v), 9) not in run
    ]


def pooled_verdicts(table, pages: list[NotebookPage] | None = None) -> dict:
    """``{<knob>.verdict record name: verdict line}`` from the pooled verdict table, and the
    cross-run regression in words under ``report_claims.CROSS_RUN`` (empty without knob
    sweeps)."""
    if table is None:
        return {}
    from awbench.apps.report.claims import CROSS_RUN
    from awbench.experiments.claims import cross_run_fit, cross_run_text
    from awbench.experiments.verdicts import which_factor

    out = {
        rn.knob_record(knob, rn.VERDICT): which_factor(rows)
        for knob, rows in table.groupby("knob", sort=False)
    }
    runs = all_runs(pages or [])
    if runs is not None:
        out[CROSS_RUN] = cross_run_text(cross_run_fit(runs))
    return out


def convergence_rows(pages: list[NotebookPage]) -> list[list[str]]:
    """Per knob: runs, converged, left out by status, values without a converged run, and the
    paper's values this profile did not run."""
    rows = []
    for knob, runs in knob_sweeps(pages).items():
        conv = runs["status"] == CONVERGED
        per_value = runs.assign(conv=conv).groupby(knob)["conv"].sum()
        empty = [fmt_value(v) for v, n in per_value.items() if n == 0]
        other = runs.loc[~conv, "status"].value_counts()
        rows.append(
            [
                f"<code>{html.escape(str(knob))}</code>",
                str(len(runs)),
                str(int(conv.sum())),
                html.escape(", ".join(f"{k} {v}" for k, v in other.items()) or "none"),
                html.escape(", ".join(empty) or "none"),
                html.escape(
                    ", ".join(fmt_value(v) for v in paper_values_left_out(knob, per_value.index))
                    or "none"
                ),
            ]
        )
    return rows


def summary_figures(pages: list[NotebookPage]) -> list[tuple[str, str, dict]]:
    """Figures across notebooks: estimated against actual gap for every run of every sweep
    (figure 2 of docs/science.md#9-figure-map) and the relative change each knob caused."""
    import pandas as pd

    from awbench.viz import gap_plots as gp

    out = []
    runs = all_runs(pages)
    if runs is not None and len(runs):
        fig = gp.estimated_vs_actual(
            runs,
            color="knob",
            title=f"Estimated against actual gap, every run of every sweep ({len(runs)} runs)",
        )
        out.append(("summary-estimate", fig.layout.title.text, fig.to_plotly_json()))
    rows = knob_rows(pages)
    if rows:
        eff = pd.DataFrame(
            [
                {
                    "knob": r["knob"],
                    "sharpness_change": r["sharpness"],
                    "size_change": r["size"],
                    "gap_change": r["real_gap"],
                }
                for r in rows
            ]
        ).astype({"sharpness_change": float, "size_change": float, "gap_change": float})
        fig = gp.knob_effects(eff)
        out.append(("summary-knobs", fig.layout.title.text, fig.to_plotly_json()))
    return out


def _seed_text(seeds: list) -> str:
    seeds = sorted({int(s) for s in seeds})
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "n/a"


def _pair_runs(pages: list[NotebookPage]) -> tuple[str, list[str]]:
    """Notebook 09's runs (two per seed: SSGD and DPSGD) in words, and its unconverged ones."""
    records: dict = {}
    for p in pages:
        records.update(p.records)
    pairs = records.get(rn.MULTILEARNER_PAIRS)
    if not isinstance(pairs, dict) or not pairs.get("seed"):
        return "", []
    bad = [
        f"{algo.upper()} seed {fmt_value(seed)} ({status})"
        for algo in ("ssgd", "dpsgd")
        for seed, status in zip(pairs["seed"], pairs.get(f"status_{algo}", []))
        if status != CONVERGED
    ]
    text = (
        f"multi-learner (09): {2 * len(pairs['seed'])} runs, SSGD and DPSGD, "
        f"seeds {_seed_text(pairs['seed'])}"
    )
    return text, bad


def _sweep_runs(pages: list[NotebookPage]) -> tuple[str, list[str]]:
    """The knob sweeps' runs in words (seeds, runs per value), and their unconverged ones."""
    runs = all_runs(pages)
    if runs is None:
        return "", []
    distinct = runs.drop_duplicates(
        [c for c in ("seed", "real_gap", "sharpness", "size") if c in runs]
    )
    per_value = runs.groupby(["knob", "value"]).size()
    lo, hi = int(per_value.min()), int(per_value.max())
    seeds = f"seeds {_seed_text(runs['seed'])}, " if "seed" in runs else ""
    text = (
        f"knob sweeps: {len(runs)} runs, {seeds}{lo if lo == hi else f'{lo}–{hi}'} per value "
        f"({len(distinct)} distinct networks: the sweeps share the default setting)"
    )
    bad = []
    if "status" in runs:
        for r in runs[runs["status"] != CONVERGED].itertuples():
            seed = f" seed {fmt_value(r.seed)}" if "seed" in runs else ""
            bad.append(f"{r.knob} = {fmt_value(r.value)}{seed} ({r.status})")
    return text, bad


def run_facts(pages: list[NotebookPage], profile: str = "") -> str:
    """The report's first line about its runs: the profile, the seeds, how many runs the knob
    sweeps and notebook 09 trained, and each run that did not converge (HTML)."""
    profile = profile or next(
        (str(p.parameters["profile"]) for p in pages if p.parameters.get("profile")), "?"
    )
    sweeps, bad = _sweep_runs(pages)
    pairs, pair_bad = _pair_runs(pages)
    bad += pair_bad
    parts = [f"profile <b>{html.escape(profile)}</b>"] + [
        html.escape(t) for t in (sweeps, pairs) if t
    ]
    if bad:
        shown = ", ".join(html.escape(b) for b in bad[:12])
        more = f" and {len(bad) - 12} more" if len(bad) > 12 else ""
        parts.append(
            f'<span class="fail">{len(bad)} run(s) did not converge and are left out of the '
            f"verdicts: {shown}{more}</span>"
        )
    elif sweeps or pairs:
        parts.append("every run converged")
    return " · ".join(parts)
