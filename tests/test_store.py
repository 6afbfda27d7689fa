"""Result store: atomic part files, dedupe by key, readable while written; records round trip."""

import math
import struct
import threading

import numpy as np
import pandas as pd
import pytest

from awbench.config import Config
from awbench.experiments.records import MIME, read_records, record
from awbench.experiments.store import Store, config_columns, config_from_row, load_store


def _row(cfg: Config, status: str = "converged", **extra) -> dict:
    return {
        "key": cfg.key(),
        "status": status,
        "reason": "test",
        **config_columns(cfg),
        "finished_at": f"2026-01-01T00:00:{cfg.seed:02d}",
        **extra,
    }


def _dirs(n: int, scale: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": np.arange(n),
            "lam": scale * np.linspace(1, 0, n),
            "sigma_g": np.ones(n),
            "c": np.zeros(n),
        }
    )


def test_write_load_round_trip(tmp_path):
    store = Store(tmp_path / "s")
    base = Config.preset("smoke")
    cfgs = [base.replace(seed=s) for s in range(3)] + [
        base.replace(weight_decay_epochs=None, seed=3)
    ]
    for i, cfg in enumerate(cfgs):
        store.write(_row(cfg, real_gap=0.1 * i), _dirs(4, i))
    store.write(_row(base.replace(seed=9), status="diverged", reason="nan"), None)  # no scalars
    runs, directions = load_store(tmp_path / "s")
    assert len(runs) == 5 and runs["key"].is_unique
    assert list(runs["seed"]) == [0, 1, 2, 3, 9]  # ordered by finished_at
    assert math.isnan(runs.loc[runs["seed"] == 9, "real_gap"].item())
    assert len(directions) == 4 * 4 and set(directions["key"]) == {c.key() for c in cfgs}
    assert list(directions.columns[:2]) == ["key", "rank"]
    for (_, row), cfg in zip(runs.iterrows(), cfgs):
        assert config_from_row(row) == cfg  # widths and weight_decay_epochs=None survive
    assert pd.isna(runs["weight_decay_epochs"].iloc[3])


def test_rewrite_replaces_never_duplicates(tmp_path):
    store = Store(tmp_path)
    cfg = Config.preset("smoke")
    store.write(_row(cfg, status="failed"), None)
    store.write(_row(cfg, status="converged"), _dirs(3))
    store.write(_row(cfg, status="converged"), _dirs(5))
    runs, directions = store.load()
    assert len(runs) == 1 and runs["status"].item() == "converged"
    assert len(directions) == 5


def test_partial_files_are_invisible(tmp_path):
    store = Store(tmp_path)
    cfg = Config.preset("smoke")
    store.write(_row(cfg), _dirs(3))
    # What a killed writer can leave behind: a temporary file, directions without a runs row.
    (store.runs_dir / f".{cfg.replace(seed=5).key()}.parquet.123.abc.tmp").write_bytes(b"PAR1 half")
    Store(tmp_path).directions_dir.joinpath(f"{cfg.replace(seed=6).key()}.parquet").write_bytes(
        _dirs(2).to_parquet()
    )
    runs, directions = store.load()
    assert list(runs["key"]) == [cfg.key()]
    assert set(directions["key"]) == {cfg.key()}


def test_readable_while_a_writer_appends(tmp_path):
    store = Store(tmp_path)
    base = Config.preset("smoke")
    n, errors, seen = 40, [], []

    def writer():
        for s in range(n):
            store.write(_row(base.replace(seed=s)), _dirs(7))

    t = threading.Thread(target=writer)
    t.start()
    while t.is_alive() or not seen or seen[-1] < n:
        try:
            runs, directions = store.load()
        except Exception as exc:  # noqa: BLE001 - the failure this test is about
            errors.append(exc)
            break
        counts = directions.groupby("key").size() if len(directions) else pd.Series(dtype=int)
        assert runs["key"].is_unique
        assert (counts.reindex(runs["key"]).fillna(0) == 7).all()  # never a half-written run
        seen.append(len(runs))
        if not t.is_alive() and seen[-1] == n:
            break
    t.join()
    assert not errors and seen[-1] == n and seen == sorted(seen)


def test_status_counts_runs_per_status(tmp_path):
    store = Store(tmp_path)
    cfgs = [Config.preset("smoke").replace(seed=s) for s in range(4)]
    store.write_plan("demo", cfgs)
    store.write(_row(cfgs[0]), _dirs(2))
    store.write(_row(cfgs[1], status="max_epochs"), _dirs(2))
    store.write(_row(cfgs[2], status="diverged"), None)
    store.write(_row(Config.preset("smoke").replace(seed=7)), None)  # not in the plan
    store.write_plan("other", cfgs[2:])
    assert sorted(load_store(tmp_path, sweep="other").runs["seed"]) == [2]
    with pytest.raises(KeyError, match="no sweep named 'nope'.*demo, other"):
        load_store(tmp_path, sweep="nope")
    table = store.status().set_index("sweep")
    counts = lambda c, m, d, f, p: {
        "converged": c,
        "max_epochs": m,
        "diverged": d,
        "failed": f,
        "pending": p,
    }
    assert table.loc["demo"].to_dict() == {"planned": 4, **counts(1, 1, 1, 0, 1)}
    assert table.loc["(not in a plan)", "converged"] == 1
    assert table.loc["other"].to_dict() == {"planned": 2, **counts(0, 0, 1, 0, 1)}
    assert table.loc["total"].to_dict() == {"planned": 5, **counts(2, 1, 1, 0, 1)}


def test_load_store_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result store"):
        load_store(tmp_path / "nope")
    runs, _ = Store(tmp_path / "empty").load()
    assert len(runs) == 0 and "status" in runs.columns


def _notebook_with(outputs: list[dict]) -> dict:
    return {"cells": [{"cell_type": "code", "outputs": outputs, "source": "", "metadata": {}}]}


def test_records_round_trip_through_notebook_json():
    outputs = []
    values = {
        "gap": np.float64(0.25),
        "n": np.int64(3),
        "bad": float("nan"),
        "big": [1.0, float("inf")],
        "curve": np.arange(3.0),
        "cfg": Config.preset("smoke"),
        "label": "ok",
    }
    import awbench.experiments.records as rec

    for name, value in values.items():
        payload = {"name": name, "value": rec._encode(value, name)}
        outputs.append({"output_type": "display_data", "data": {MIME: payload, "text/plain": name}})
    got = read_records(_notebook_with(outputs))
    assert got["gap"] == 0.25 and got["n"] == 3 and math.isnan(got["bad"])
    assert got["big"] == [1.0, math.inf] and got["curve"] == [0.0, 1.0, 2.0]
    assert got["cfg"]["widths"] == [20, 20] and got["label"] == "ok"


def test_record_outside_ipython_keeps_value_and_rejects_objects():
    import awbench.experiments.records as rec

    record("x", np.float32(1.5))
    assert rec.recorded["x"] == 1.5
    with pytest.raises(TypeError, match="record value"):
        record("obj", object())
    with pytest.raises(ValueError):
        record("", 1)


def test_compact_directions_keeps_numbers_to_float32(tmp_path):
    store = Store(tmp_path)
    cfg = Config.preset("smoke")
    dirs = pd.DataFrame(
        {
            "rank": range(500),
            "lam": np.linspace(0, 1, 500) ** 3,
            "sigma_g": np.random.default_rng(0).random(500),
        }
    )
    store.write(_row(cfg), dirs)
    before = store.load().directions
    assert store.compact_directions() > 0
    after = store.load().directions
    assert after["sigma_g"].dtype == np.float32 and after["rank"].tolist() == list(range(500))
    np.testing.assert_allclose(after["lam"], before["lam"], rtol=1e-7, atol=1e-30)


def _packed_store(tmp_path, n: int = 4) -> tuple[Store, list[Config]]:
    store = Store(tmp_path)
    cfgs = [Config.preset("smoke").replace(seed=s) for s in range(n)]
    for cfg in cfgs:
        store.write(_row(cfg, real_gap=0.1 * cfg.seed + 1e-9), _dirs(6, 1 + cfg.seed))
    return store, cfgs


def test_a_packed_store_reads_as_it_did_in_two_files(tmp_path):
    store, cfgs = _packed_store(tmp_path)
    before = store.load()
    assert store.pack() > 0
    assert sorted(p.name for p in store.path.glob("*/*.parquet")) == [
        "_packed.parquet",
        "_packed.parquet",
    ]
    after = store.load()
    pd.testing.assert_frame_equal(after.runs, before.runs, check_dtype=False)
    assert after.runs["real_gap"].tolist() == before.runs["real_gap"].tolist()  # float64 kept
    assert after.directions["lam"].dtype == np.float32
    np.testing.assert_allclose(after.directions["lam"], before.directions["lam"], rtol=1e-7)
    assert store.keys() == {c.key() for c in cfgs}
    assert store.statuses() == {c.key(): "converged" for c in cfgs}
    assert list(load_store(tmp_path).runs["seed"]) == [0, 1, 2, 3]
    assert list(store.load([cfgs[2].key()]).runs["seed"]) == [2]
    assert set(store.load([cfgs[2].key()]).directions["key"]) == {cfgs[2].key()}


def test_pack_keeps_what_thin_keeps(tmp_path):
    store, _ = _packed_store(tmp_path)
    store.pack(lambda d: d.loc[d["rank"] % 2 == 0, ["key", "rank", "lam"]])
    d = store.load().directions
    assert list(d.columns) == ["key", "rank", "lam"] and set(d["rank"]) == {0, 2, 4}


def test_a_run_written_after_packing_supersedes_its_packed_rows(tmp_path):
    store, cfgs = _packed_store(tmp_path)
    store.pack()
    store.write(_row(cfgs[1], real_gap=42.0), _dirs(3, 7))
    runs, directions = store.load()
    assert len(runs) == 4 and runs["key"].is_unique
    assert runs.loc[runs["key"] == cfgs[1].key(), "real_gap"].item() == 42.0
    mine = directions[directions["key"] == cfgs[1].key()]
    assert len(mine) == 3 and mine["lam"].max() == 7
    # a rerun without directions: its packed directions are gone with it
    store.write(_row(cfgs[2], status="diverged"), None)
    assert cfgs[2].key() not in set(store.load().directions["key"])
    # the new parts go into the pack when it is packed again
    store.pack()
    runs, directions = store.load()
    assert runs.loc[runs["key"] == cfgs[1].key(), "real_gap"].item() == 42.0
    assert len(directions[directions["key"] == cfgs[1].key()]) == 3


def test_directions_written_before_their_runs_row_wait_for_it(tmp_path):
    """A writer replacing a packed run has written its directions part but not yet its runs
    row: readers still see the packed run with its packed directions, once."""
    store, cfgs = _packed_store(tmp_path)
    store.pack()
    key = cfgs[0].key()
    pd.DataFrame({"key": key, **_dirs(2, 9)}).to_parquet(store.directions_dir / f"{key}.parquet")
    d = store.load().directions
    assert len(d[d["key"] == key]) == 6 and d.loc[d["key"] == key, "lam"].max() == 1


def test_a_store_mixing_rows_before_and_after_a_new_field_reads_its_default():
    """An old store (no ``loss`` column) that gains a new row: pandas fills the old rows with
    NaN, which must read as the field's default, not as None (knob panel train-now)."""
    import pandas as pd

    from awbench.config import Config
    from awbench.experiments.store import config_columns, config_from_row

    cfg = Config.preset("smoke")
    old = {k: v for k, v in config_columns(cfg).items() if k != "loss"}
    new = config_columns(cfg.replace(seed=1))
    rows = pd.DataFrame([old, new])
    assert pd.isna(rows.loc[0, "loss"])
    assert config_from_row(rows.iloc[0]) == cfg
    assert config_from_row(rows.iloc[1]).loss == "ce"


def test_a_flipped_byte_in_a_stored_number_is_an_unreadable_part(tmp_path):
    store = Store(tmp_path / "s")
    cfgs = [Config.preset("smoke").replace(seed=s) for s in range(2)]
    gap = 0.123456789012345
    for cfg in cfgs:
        store.write(_row(cfg, pair_gap=gap + cfg.seed), _dirs(4))
    part = store.runs_dir / f"{cfgs[0].key()}.parquet"
    data = bytearray(part.read_bytes())
    at = data.find(struct.pack("<d", gap))
    assert at >= 0
    data[at + 3] ^= 0x01  # snappy stores random doubles as literals: the file still parses
    part.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"skipping unreadable store part {part}.*CRC"):
        runs, _ = store.load()
    assert runs["key"].tolist() == [cfgs[1].key()]  # never the damaged number
