"""The explorer's payload cache (awbench.apps.knobs.payload_cache): keyed by what the payload
is made of, built once, and read back equal."""

from __future__ import annotations

import json

import pytest

from awbench.apps.knobs import payload_cache as pc


@pytest.fixture
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("AWBENCH_CACHE", str(tmp_path / "cache"))
    grid, user = tmp_path / "grid", tmp_path / "user"
    (grid / "runs").mkdir(parents=True)
    (grid / "runs" / "a.parquet").write_bytes(b"one run")
    return grid, user


def test_the_key_follows_the_bytes_of_each_store_in_its_role(stores, tmp_path):
    grid, user = stores
    key = pc.payload_key((grid, user), "batch_size")
    assert pc.payload_key((grid, user), "batch_size") == key
    assert pc.payload_key((grid, user), "lr") != key  # another first knob
    assert pc.payload_key((user, grid), "batch_size") != key  # the roles matter
    (user / "runs").mkdir(parents=True)
    (user / "runs" / "b.parquet").write_bytes(b"trained now")
    with_user = pc.payload_key((grid, user), "batch_size")
    assert with_user != key
    (grid / "runs" / "a.parquet").write_bytes(b"one ruN")  # one byte
    assert pc.payload_key((grid, user), "batch_size") not in (key, with_user)


def test_built_once_then_read(stores):
    payload = {"runs": [{"k": [0, 1], "x": 0.125, "s": "σ ≤ 1", "n": None}], "ok": True}
    built = []

    def build():
        built.append(1)
        return json.loads(json.dumps(payload))

    assert pc.cached_payload(stores, "batch_size", build) == payload
    assert pc.cached_payload(stores, "batch_size", build) == payload
    assert len(built) == 1
    (stores[0] / "runs" / "a.parquet").write_bytes(b"another grid")
    pc.cached_payload(stores, "batch_size", build)
    assert len(built) == 2


def test_a_changed_source_a_damaged_entry_a_new_library_rebuild_it(stores):
    pc.cached_payload(stores, "batch_size", lambda: {"v": 1})
    (path,) = pc.folder().glob("*.json")
    entry = json.loads(path.read_text())
    assert entry["payload"] == {"v": 1}
    assert "apps/knobs/payload_cache.py" in entry["sources"]  # loaded when it was built
    assert pc.cached_payload(stores, "batch_size", lambda: {"v": 0}) == {"v": 1}
    entry["sources"]["apps/knobs/payload_cache.py"] = "edited since"
    path.write_text(json.dumps(entry))
    assert pc.cached_payload(stores, "batch_size", lambda: {"v": 2}) == {"v": 2}
    entry = json.loads(path.read_text())
    entry["libraries"]["pandas"] = "0.1"
    path.write_text(json.dumps(entry))
    assert pc.cached_payload(stores, "batch_size", lambda: {"v": 3}) == {"v": 3}
    path.write_text(path.read_text()[:20])  # cut short
    assert pc.cached_payload(stores, "batch_size", lambda: {"v": 4}) == {"v": 4}


def test_old_entries_go(stores, monkeypatch):
    monkeypatch.setattr(pc, "KEEP", 2)
    for knob in ("batch_size", "lr", "dropout", "seed"):
        pc.cached_payload(stores, knob, lambda: {"v": 3})
    assert len(list(pc.folder().glob("*.json"))) == 2
