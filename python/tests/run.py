#!/usr/bin/python3
"""Run the gmflow Python package's tests (python/tests) with pytest, as ctest's python/pytest.

Exit 77 (ctest: skipped) when pytest or NumPy is not installed (Debian: python3-pytest
python3-numpy); the package itself must import (PYTHONPATH=<build>/python, set by ctest).
Extra arguments go to pytest, e.g. `run.py -k interrupt -v`.
"""
import os
import sys

try:
    import numpy  # noqa: F401
    import pytest
except ImportError as e:
    print(f"python tests: SKIP: {e} (Debian packages: python3-pytest python3-numpy)")
    sys.exit(77)

here = os.path.dirname(os.path.abspath(__file__))
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--durations=5", here] + sys.argv[1:]))
