"""Shared fixtures: a fixed seed for every test, and a clean skip for CUDA-only tests."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state (torch, numpy, random)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def pytest_ignore_collect(collection_path, config):
    """`pytest --benchmark-only` with no paths runs the benchmarks only (benchmarks/conftest.py
    leaves them out of plain `pytest`); without this, every test here would be collected
    just to be skipped. Returns None, not False, so pytest's own rules still apply."""
    if config.getoption("benchmark_only", False) and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, with a reason, on machines without a CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
