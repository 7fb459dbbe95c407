"""The Triton kernels in Triton's interpreter, on CPU tensors.

TRITON_INTERPRET is read when kernels are decorated, so these tests only run in a process
started with it: ``TRITON_INTERPRET=1 pytest tests/interpreter``. In any other run every
test here is skipped with that reason.
"""

import os
from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    skip = pytest.mark.skip(reason="run with TRITON_INTERPRET=1 pytest tests/interpreter (own process)")
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.interpreter)
            if not interpreting:
                item.add_marker(skip)
