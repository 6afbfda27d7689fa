"""The knob notebooks' sections (awbench.viz.knob_section): a knob's section shows its table,
then each figure followed by the sentence that reads it, and the closing section shows every
run's estimate and each knob's effects. The notebooks 04-07 run knob_section itself
(tests/test_notebooks.py)."""

import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown
from test_report_verdicts import write_sweep

from awbench.experiments import knob_sweeps
from awbench.viz import knob_section as ks
from awbench.viz import knob_takeaways as kt

KNOB = "batch_size"


def test_a_knob_section_is_its_table_then_each_figure_and_its_takeaway(tmp_path):
    runs = write_sweep(tmp_path)
    outputs = ks.knob_outputs(runs, KNOB, "quick")
    kinds = [type(o) for o in outputs]
    assert kinds == [pd.DataFrame, go.Figure, Markdown, go.Figure, Markdown, go.Figure, Markdown]
    assert outputs[0].equals(knob_sweeps.summary_table(runs, KNOB))
    titles = [o.layout.title.text for o in outputs[1::2]]
    assert all(titles), titles
    assert [o.data for o in outputs[2::2]] == [
        kt.gap_takeaway(runs, KNOB),
        kt.factor_takeaway(runs, KNOB, "quick"),
        kt.plane_takeaway(runs),
    ]


def test_the_closing_section_pools_every_knob(tmp_path):
    bs = write_sweep(tmp_path / "bs")
    other = bs.assign(knob="lr", value=bs["batch_size"] / 1000, lr=bs["batch_size"] / 1000)
    runs_by_knob = {KNOB: bs, "lr": other}
    estimate, sentence, effects_figure, effects = ks.all_runs_outputs(runs_by_knob, "quick")
    pooled = pd.concat(runs_by_knob.values(), ignore_index=True)
    assert isinstance(estimate, go.Figure) and isinstance(effects_figure, go.Figure)
    assert sentence.data == kt.estimate_takeaway(pooled)
    assert list(effects["knob"]) == [KNOB, "lr"]
    assert effects.equals(knob_sweeps.effects_table(runs_by_knob, "quick"))
