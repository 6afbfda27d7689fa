"""``awbench present`` as a local server (issue 22, item 3): ``--port`` checked, a busy port an
error naming it, a token and a Host check, at most ``--max-kernels`` kernels (one per page),
a closed page's kernel shut down after ``--idle-timeout``, and the server gone within seconds
of a ``kill -9`` of the ``awbench`` process.

The fast tests call the command line in process. The slow ones start ``awbench present
--no-browser`` in a subprocess and count its kernel processes with psutil.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from browser_support import free_port, stop_group

from awbench.apps import cli
from awbench.apps.present import server as present_server

# --- in process ---------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["-1", "0", "70000"])
def test_a_port_out_of_range_is_one_clear_line(port, capsys):
    assert cli.main(["present", "--no-browser", "--port", port]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"got {port}" in err and "1 to 65535" in err and "--port" in err


def test_a_busy_port_is_an_error_naming_it(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["present", "--no-browser", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"port {port} on 127.0.0.1 is in use" in err


@pytest.mark.parametrize(
    ("flag", "value"), [("--max-kernels", "0"), ("--idle-timeout", "0"), ("--idle-timeout", "-5")]
)
def test_kernel_limits_are_checked(flag, value, capsys):
    assert cli.main(["present", "--no-browser", flag, value]) == 2
    assert flag in capsys.readouterr().err


def test_the_voila_settings():
    pytest.importorskip("voila")
    settings = {"port": 9999, "token": "t0k", "parent": 1, "max_kernels": 2, "idle_timeout": 60}
    c = present_server.voila_config(settings)
    assert c.Voila.ip == "127.0.0.1" and c.Voila.port == 9999 and c.Voila.port_retries == 0
    assert c.Voila.token == "t0k" and not c.Voila.open_browser
    assert c.Voila.tornado_settings == {
        "allow_remote_access": False,
        "local_hostnames": ["localhost"],
    }
    assert c.MappingKernelManager.cull_idle_timeout == 60
    assert c.MappingKernelManager.cull_connected is False
    assert c.CappedKernelManager.max_kernels == 2
    manager = present_server.CappedKernelManager
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    assert issubclass(manager, AsyncMappingKernelManager)
    assert c.VoilaConfiguration.multi_kernel_manager_class.endswith(".CappedKernelManager")


def test_the_template_makes_readouts_text(tmp_path):
    pytest.importorskip("voila")
    present_server.prepare(tmp_path)
    text = (tmp_path / "share/jupyter/voila/templates/awbench-present/index.html.j2").read_text()
    assert present_server.ONE_TAB_PER_SLIDER in text and "://cdn" not in text
    spec = json.loads((tmp_path / "share/jupyter/kernels/awbench-present/kernel.json").read_text())
    assert spec["argv"][:2] == [sys.executable, "-c"] and "rfc3987_syntax" in spec["argv"][2]


# --- a real server -------------------------------------------------------------------------

URL = re.compile(r"awbench present: (http://127\.0\.0\.1:(\d+)/\?token=(\S+))")


class Server:
    """``awbench present --no-browser`` in a subprocess of its own session."""

    def __init__(self, tmp_path: Path, *args: str):
        env = {k: v for k, v in os.environ.items() if k not in ("AWBENCH_QUIET",)}
        env.update(OMP_NUM_THREADS="1", AWBENCH_CACHE=str(tmp_path / "cache"))
        self.log_path = tmp_path / "present.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - written until stop()
        self.port = free_port()
        cmd = [sys.executable, "-m", "awbench.apps.cli", "present", "--no-browser"]
        self.proc = subprocess.Popen(
            [*cmd, f"--port={self.port}", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            found = URL.search(self.log_path.read_text())
            if found and self._answers():
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("awbench present did not start:\n" + self.log())
            time.sleep(0.2)
        self.url, self.token = found.group(1), found.group(3)
        assert int(found.group(2)) == self.port

    def _answers(self) -> bool:
        try:
            return self.status("/voila/static/voila.js") == 200
        except OSError:
            return False

    def request(self, path: str, host: str | None = None, timeout: float = 300):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{self.port}")
        conn.endheaders()
        return conn, conn.getresponse()

    def status(self, path: str, host: str | None = None) -> int:
        conn, response = self.request(path, host)
        try:
            return response.status
        finally:
            conn.close()

    def open_page(self) -> None:
        """GET the page: its kernel starts and runs the cell (no browser connects to it)."""
        conn, response = self.request(f"/?token={self.token}")
        try:
            assert response.status == 200
            assert b"awbench-present" in response.read()
        finally:
            conn.close()

    def voila(self):
        import psutil

        return [
            p
            for p in psutil.Process(self.proc.pid).children(recursive=True)
            if "awbench.apps.present.server" in " ".join(p.cmdline())
        ]

    def kernels(self) -> int:
        import psutil

        n = 0
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                n += "ipykernel" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                continue
        return n

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        stop_group(self.proc)
        self._log.close()


@pytest.fixture
def server_factory(tmp_path):
    pytest.importorskip("voila")
    pytest.importorskip("psutil")
    started: list[Server] = []

    def start(*args: str) -> Server:
        started.append(Server(tmp_path, *args))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_token_host_check_kernel_cap_and_culling(server_factory):
    server = server_factory("--max-kernels=2", "--idle-timeout=30")
    assert server.status("/") in (302, 403)  # no token: the login page, never the app
    assert server.status("/?token=wrong") in (302, 403)
    assert server.status(f"/?token={server.token}", host="evil.example") == 403
    assert server.status(f"/?token={server.token}", host=f"evil.example:{server.port}") == 403
    assert server.status("/voila/static/voila.js", host="localhost") == 200

    counts: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            counts.append(server.kernels())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for _ in range(3):
            server.open_page()
    finally:
        done.set()
        sampler.join()
    assert max(counts) <= 2, f"kernel counts {sorted(set(counts))}\n{server.log()}"
    assert "2 pages at most" in server.log()

    deadline = time.monotonic() + 240  # busy kernels (still running the cell) are not culled
    while server.kernels() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server.kernels() == 0, "a closed page's kernel was not shut down\n" + server.log()
    for word in ("not trusted", "Traceback", "without encryption", "Culling"):
        assert word not in server.log(), server.log()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_server_dies_with_awbench_even_on_kill_9(server_factory):
    server = server_factory()
    server.open_page()
    voila = server.voila()
    assert len(voila) == 1 and server.kernels() == 1
    kernels = voila[0].children(recursive=True)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    import psutil

    _gone, alive = psutil.wait_procs(voila + kernels, timeout=10)
    assert not alive, f"still running 10 s after kill -9 of awbench: {alive}"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
