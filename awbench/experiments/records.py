"""Numbers a notebook records for whoever runs it headless (papermill, CI, sweeps).

Inside a notebook, ``record("test_error", 0.031)`` displays one small output with the custom
mime type ``application/vnd.awbench.record+json`` (plus a one-line text fallback, so Jupyter
shows ``test_error = 0.031``). After papermill executed the notebook,
``read_records("out.ipynb")`` returns ``{"test_error": 0.031, ...}``; a name recorded twice
keeps its last value.

Values must be JSON-like: numbers, strings, booleans, None, lists and dicts of those. NumPy
and torch scalars and arrays, tuples, pandas Series/DataFrames and Configs are converted;
NaN and infinities survive the round trip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MIME = "application/vnd.awbench.record+json"
_FLOAT_TAG = "$float"  # {"$float": "nan"}: JSON has no NaN / Infinity

# Everything recorded in this process, in order (handy outside Jupyter and in tests).
recorded: dict[str, Any] = {}


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {_FLOAT_TAG: repr(value)}
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    from awbench.config import Config

    if isinstance(value, Config):
        return _encode(value.to_dict(), where)
    type_name = f"{type(value).__module__}.{type(value).__qualname__}"
    if type_name.startswith("pandas.") and hasattr(value, "to_dict"):
        if hasattr(value, "columns"):
            return _encode(value.to_dict("list"), where)
        return _encode(value.tolist(), where)
    if hasattr(value, "tolist"):  # numpy scalar/array, torch tensor
        return _encode(value.tolist(), where)
    if hasattr(value, "item"):
        return _encode(value.item(), where)
    raise TypeError(
        f"record value {where} has type {type_name}: expected a number, string, bool, None, "
        "or a list/dict of those (NumPy, torch and pandas values are converted)"
    )


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_FLOAT_TAG}:
            return float(value[_FLOAT_TAG])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def record(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` as a small JSON output of the current notebook cell.

    Outside IPython it is only kept in :data:`recorded`. Returns None so that a trailing
    ``record(...)`` does not display the value a second time.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"record name must be a non-empty string, got {name!r}")
    payload = {"name": name, "value": _encode(value, name)}
    recorded[name] = _decode(payload["value"])
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with every Jupyter install
        return
    if get_ipython() is None:
        return
    from IPython.display import display

    text = f"{name} = {json.dumps(payload['value'])}"
    if len(text) > 200:
        text = text[:197] + "..."
    display({MIME: payload, "text/plain": text}, raw=True)
    return


def _outputs(nb: Any):
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") in ("display_data", "execute_result"):
                data = out.get("data", {})
                if MIME in data:
                    yield data[MIME]


def read_records(notebook: str | Path | dict) -> dict[str, Any]:
    """The values recorded in an executed notebook (a path or a loaded notebook dict)."""
    if isinstance(notebook, (str, Path)):
        path = Path(notebook)
        if not path.exists():
            raise FileNotFoundError(f"no executed notebook at {path}")
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
    else:
        nb = notebook
    out: dict[str, Any] = {}
    for payload in _outputs(nb):
        if isinstance(payload, str):  # some writers store JSON mime data as text
            payload = json.loads(payload)
        out[payload["name"]] = _decode(payload["value"])
    return out
