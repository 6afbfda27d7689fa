"""Session-wide test settings: a private cache folder, quiet progress bars, one thread.

Keep this file minimal; fixtures that only one test module needs belong in that module.
"""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _awbench_test_env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AWBENCH_CACHE", str(tmp_path_factory.mktemp("awbench_cache")))
    mp.setenv("AWBENCH_QUIET", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small MLPs run fastest single-threaded (DESIGN.md)
    yield
    torch.set_num_threads(threads)
    mp.undo()
