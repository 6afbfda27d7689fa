"""papermill reruns: one executed notebook per parameter set, an index, records, validation first."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from awbench.apps.cli import main
from awbench.config import Config, ConfigError
from awbench.experiments.notebook_runs import plan_notebook_runs, run_notebooks
from awbench.experiments.records import read_records

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).parent / "fixtures" / "record_params.ipynb"


def _grid(tmp_path: Path, grid, name: str = "grid.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def test_grid_of_three_parameter_sets(tmp_path, capsys):
    grid = _grid(
        tmp_path,
        [
            {"profile": "smoke", "batch_size": [25, 100], "weight_decay": 0.01},
            {"profile": "smoke", "batch_size": 50, "weight_decay": "1e-3"},
        ],
    )
    out = tmp_path / "runs" / "fixture"  # created by the command
    rc = main(
        ["notebooks", "run", str(NOTEBOOK), "--grid", grid, "--out", str(out), "--workers", "2"]
    )
    assert rc == 0, capsys.readouterr().err
    notebooks = sorted(p.name for p in out.glob("*.ipynb"))
    assert len(notebooks) == 3 and not list(out.glob(".*"))
    assert {n.split("_", 1)[1] for n in notebooks} == {
        "bs=25_wd=0.01.ipynb",
        "bs=100_wd=0.01.ipynb",
        "bs=50_wd=0.001.ipynb",
    }
    index = pd.read_parquet(out / "index.parquet")
    assert len(index) == 3 and (index["status"] == "ok").all() and (index["error"] == "").all()
    assert {"key", "path", "parameters", "duration", "batch_size", "profile"} <= set(index.columns)
    assert (index["duration"] > 0).all()
    for _, row in index.iterrows():
        rec = read_records(out / row["path"])
        cfg = Config.preset("smoke").replace(
            batch_size=row["batch_size"], weight_decay=row["weight_decay"]
        )
        assert rec["key"] == cfg.key() == row["record.key"]  # the YAML string "1e-3" became 0.001
        assert rec["steps_per_epoch"] == -(-400 // row["batch_size"])
        assert rec["quiet"] == "1"  # kernels run with AWBENCH_QUIET=1
        assert row["path"].startswith(row["key"] + "_")

    # Rerun: every parameter set is already done, no kernel starts, the index is unchanged.
    again = run_notebooks(NOTEBOOK, grid, out, workers=2, quiet=True)
    pd.testing.assert_frame_equal(
        again.sort_values("key").reset_index(drop=True)[index.columns],
        index.sort_values("key").reset_index(drop=True),
    )

    # A notebook that raises is recorded as failed, with the error and the executed notebook.
    bad = run_notebooks(NOTEBOOK, {"weight_decay": 5.0}, tmp_path / "bad", workers=1, quiet=True)
    row = bad.iloc[0]
    assert row["status"] == "failed" and "weight_decay above 1" in row["error"]
    assert "AssertionError" in row["error"]
    assert read_records(tmp_path / "bad" / row["path"])["scaled_decay"] == 125.0


def test_bad_parameter_set_is_rejected_before_any_kernel_starts(tmp_path, capsys):
    out = tmp_path / "out"
    grid = _grid(tmp_path, [{"batch_size": [25, 100]}, {"batch_size": 0}])
    rc = main(["notebooks", "run", str(NOTEBOOK), "--grid", grid, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "parameter set 2" in err and "batch_size=0" in err
    assert not out.exists()  # nothing executed, no folder, no index

    with pytest.raises(ConfigError, match="weigth_decay is not a parameter of record_params.ipynb"):
        plan_notebook_runs(NOTEBOOK, {"weigth_decay": [0.0, 0.1]})
    with pytest.raises(ConfigError, match="dropout is not a parameter"):
        run_notebooks(NOTEBOOK, {"dropout": 0.1}, out)  # a Config field the notebook lacks
    with pytest.raises(ConfigError, match=r"Config.weight_decay=-1.0 is not allowed"):
        run_notebooks(NOTEBOOK, {"weight_decay": [0.0, -1.0]}, out)
    assert not out.exists()


def test_parameter_sets_are_canonical_and_deduplicated():
    sets = plan_notebook_runs(NOTEBOOK, {"batch_size": [25, "25", 100.0], "seed": 1})
    assert [s.params for s in sets] == [
        {"batch_size": 25, "seed": 1},
        {"batch_size": 100, "seed": 1},
    ]
    assert [s.label for s in sets] == ["bs=25", "bs=100"]
    assert sets[0].key == Config.preset("smoke").replace(batch_size=25, seed=1).key()


def _typed_notebook(tmp_path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell(
        'steps: int = 3  # how many\nname: str = "x"  # a label\nscale = 1.5\n'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(steps, name, scale)")]
    path = tmp_path / "typed.ipynb"
    nbformat.write(nb, path)
    return path


def test_device_files_are_refused_as_notebook_or_grid(tmp_path, capsys):
    grid = _grid(tmp_path, {"batch_size": [25, 100]})
    out = str(tmp_path / "out")
    assert main(["notebooks", "run", "/dev/zero", "--grid", grid, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "notebook /dev/zero is not a regular file" in err
    assert main(["notebooks", "run", str(NOTEBOOK), "--grid", "/dev/urandom", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "grid file /dev/urandom is not a regular file" in err
    assert not Path(out).exists()


def test_parameters_that_are_no_config_fields_are_checked_against_the_annotations(tmp_path):
    notebook = _typed_notebook(tmp_path)
    with pytest.raises(ConfigError, match=r"parameter set 1 .*steps='abc' is not allowed.*int"):
        plan_notebook_runs(notebook, {"steps": [4, "abc"]})
    with pytest.raises(ConfigError, match=r"scale='big' is not allowed.*scale: float"):
        plan_notebook_runs(notebook, {"scale": "big"})  # no annotation: the literal's type
    with pytest.raises(ConfigError, match=r"name=3 is not allowed.*name: str"):
        plan_notebook_runs(notebook, {"name": 3})
    sets = plan_notebook_runs(notebook, {"steps": ["5", 6], "scale": 2})
    assert [s.params for s in sets] == [{"steps": 5, "scale": 2.0}, {"steps": 6, "scale": 2.0}]


def test_long_labels_are_hashed_in_file_names(tmp_path):
    notebook = _typed_notebook(tmp_path)
    long = ["a" * 400, "a" * 399 + "b"]
    sets = plan_notebook_runs(notebook, {"name": long})
    names = [s.filename for s in sets]
    assert len(set(names)) == 2 and all(len(n) <= 120 for n in names)
    assert all(n.startswith(f"{s.key}_name=aaaa") for n, s in zip(names, sets))
    assert [s.label for s in sets] == [f"name={v}" for v in long]  # the index keeps it whole
    assert all(len(s.temporary(tmp_path).name) < 160 for s in sets)


def test_a_dead_process_temporaries_are_removed_at_once(tmp_path):
    import subprocess
    import sys

    from awbench.experiments.notebook_runs import remove_dead_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sets = plan_notebook_runs(NOTEBOOK, {"batch_size": [25, 100]})
    orphan = sets[0].temporary(tmp_path, pid=dead.pid)
    live = sets[1].temporary(tmp_path)  # this process: still writing
    older_form = tmp_path / f".{Path(sets[0].filename).stem}.{dead.pid}.tmp.ipynb"
    for f in (orphan, live, older_form):
        f.write_text("{}")  # all just saved: the age rule alone would keep them for hours
    assert remove_dead_temporaries(tmp_path) == [orphan]
    assert not orphan.exists() and live.exists() and older_form.exists()


def test_a_parameter_set_that_fails_late_is_recorded_and_the_batch_goes_on(tmp_path):
    out = tmp_path / "out"
    grid = {"profile": "smoke", "batch_size": [25, 50, 100]}
    blocked = plan_notebook_runs(NOTEBOOK, grid)[1]
    (out / blocked.filename).mkdir(parents=True)  # its notebook cannot be moved into place
    index = run_notebooks(NOTEBOOK, grid, out, workers=1, quiet=True)
    by_key = index.set_index("key")
    assert by_key.loc[blocked.key, "status"] == "failed"
    assert "IsADirectoryError" in by_key.loc[blocked.key, "error"]
    assert (index["status"] == "ok").sum() == 2 and len(index) == 3
    assert not list(out.glob(".*.tmp.ipynb"))
