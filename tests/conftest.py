"""Fixtures shared by the suite. Helpers that are not fixtures live in support.py."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
