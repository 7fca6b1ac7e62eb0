"""Test markers: `gpu` (skipped without CUDA), `network` (skipped unless HAIRLIB_NETWORK=1),
`slow` (skipped unless --run-slow). Everything else runs on CPU, offline, in CI."""
import os

import pytest
import torch

# Most tests run tiny networks, where extra threads only add synchronisation; and on a shared
# machine two OpenMP threads beside another busy process can slow a test tenfold.
torch.set_num_threads(int(os.environ.get("HAIRLIB_TEST_THREADS", "1")))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_net = pytest.mark.skip(reason="needs the internet (set HAIRLIB_NETWORK=1)")
    skip_slow = pytest.mark.skip(reason="slow (use --run-slow)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "network" in item.keywords and os.environ.get("HAIRLIB_NETWORK") != "1":
            item.add_marker(skip_net)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test sees an empty hairlib cache unless it sets its own HAIRLIB_HOME."""
    monkeypatch.setenv("HAIRLIB_HOME", str(tmp_path_factory.mktemp("hairlib_home")))
