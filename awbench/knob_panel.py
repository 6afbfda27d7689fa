"""Notebook 08's knob panel, in one namespace: ``from awbench import knob_panel``.

The panel over the precomputed knob grid, its takeaway, what each knob does on the grid, and
a knob's sweep through the grid. They live in ``awbench.apps.knobs``; this module only
gathers them for the notebook.
"""

from awbench.apps.knobs.effects import grid_effects
from awbench.apps.knobs.grid import KNOBS
from awbench.apps.knobs.panels import sweep_figure
from awbench.apps.knobs.sentences import effects_takeaway
from awbench.apps.knobs.widgets import KnobPanel, takeaway

__all__ = ["KNOBS", "KnobPanel", "effects_takeaway", "grid_effects", "sweep_figure", "takeaway"]
