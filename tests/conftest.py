"""Shared test fixtures for gluon_resnest."""
import os

import mxnet as mx
import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (still run in CI)')


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture
def tmp_root(tmp_path):
    """A private weights folder, so no test touches ~/.mxnet."""
    root = tmp_path / 'models'
    root.mkdir()
    return str(root)
