"""Reading executed notebooks for the report: their markdown, figures, tables, takeaways,
errors and recorded numbers, as one :class:`NotebookPage` each."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awbench.experiments.records import MIME as RECORD_MIME
from awbench.experiments.records import read_records

PLOTLY_MIME = "application/vnd.plotly.v1+json"
NOTEBOOK_PATTERN = re.compile(r"^\d\d_.+\.ipynb$")


@dataclass
class Block:
    kind: str  # markdown (a cell) | takeaway (a computed markdown output) | figure | html | text | error
    content: Any
    title: str = ""
    anchor: str = ""


@dataclass
class NotebookPage:
    stem: str
    title: str
    path: Path
    blocks: list[Block] = field(default_factory=list)
    records: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    seconds: float | None = None
    error: str = ""


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _figure_title(fig: dict) -> str:
    title = fig.get("layout", {}).get("title", "")
    if isinstance(title, dict):
        title = title.get("text", "")
    return re.sub(r"<[^>]+>", "", str(title))


def read_notebook(path: str | os.PathLike) -> NotebookPage:
    """Blocks (markdown, figures, tables, takeaways, errors) of one executed notebook."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    page = NotebookPage(stem=path.stem, title=path.stem, path=path)
    page.parameters = nb.get("metadata", {}).get("papermill", {}).get("parameters", {}) or {}
    page.seconds = nb.get("metadata", {}).get("papermill", {}).get("duration")
    n_fig = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = _text(cell.get("source", ""))
            if page.title == page.stem:
                m = re.match(r"\s*#\s+(.+)", src)
                if m:
                    page.title = m.group(1).strip()
            page.blocks.append(Block("markdown", src))
            continue
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                tb = "\n".join(out.get("traceback", []))
                tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)
                page.blocks.append(
                    Block("error", f"{out.get('ename')}: {out.get('evalue')}\n\n{tb}")
                )
                page.error = page.error or f"{out.get('ename')}: {out.get('evalue')}"
                continue
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                n_fig += 1
                fig = data[PLOTLY_MIME]
                if isinstance(fig, str):
                    fig = json.loads(fig)
                page.blocks.append(
                    Block(
                        "figure",
                        fig,
                        _figure_title(fig) or f"Figure {n_fig}",
                        f"{page.stem}-fig{n_fig}",
                    )
                )
            elif RECORD_MIME in data:
                continue  # collected with read_records
            elif "text/markdown" in data:
                page.blocks.append(Block("takeaway", _text(data["text/markdown"])))
            elif "text/html" in data:
                page.blocks.append(Block("html", _text(data["text/html"])))
            elif "text/plain" in data and kind == "execute_result":
                page.blocks.append(Block("text", _text(data["text/plain"])))
    page.records = read_records(nb)
    return page


def notebook_paths(folder: str | os.PathLike) -> list[Path]:
    """``NN_*.ipynb`` files of ``folder`` in order."""
    return sorted(p for p in Path(folder).iterdir() if NOTEBOOK_PATTERN.match(p.name))
