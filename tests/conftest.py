"""pytest setup for the Python tests: the package root and the ``gpu`` marker."""

import os
import sys

_PYTHON_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
if _PYTHON_ROOT not in sys.path:
    sys.path.insert(0, _PYTHON_ROOT)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA device (skipped where torch.cuda.is_available() is False)"
    )
