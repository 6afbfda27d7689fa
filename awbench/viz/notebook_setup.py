"""A notebook kernel's set-up for awbench's figures, the first call of every notebook."""

from __future__ import annotations


def setup(threads: int = 1) -> None:
    """One torch thread (small MLPs run fastest so) and plotly figures as mime bundles, which
    JupyterLab renders and the report re-embeds with one offline copy of plotly.js."""
    import plotly.io as pio
    import torch

    torch.set_num_threads(threads)
    pio.renderers.default = "plotly_mimetype"
