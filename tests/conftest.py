"""pytest set-up: the `gpu` marker, and the built package on the path."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped where there is none)")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test session compiles into its own cache unless told otherwise."""
    if "FMOE_TEST_CACHE_DIR" in os.environ:
        monkeypatch.setenv("FMOE_CACHE_DIR", os.environ["FMOE_TEST_CACHE_DIR"])
    else:
        monkeypatch.setenv("FMOE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fmoe-cache"))
