"""Fixtures shared by the suite. Helpers that are not fixtures live in support.py."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Summary lines a test wants in the log (its figures: "N passed, M failed", a soak's table):
# a test calls the `summary` fixture; the lines travel with the test's report, so they are
# printed at the end of the run also when the suite runs on several workers (pytest-xdist).
_SUMMARIES: list[str] = []


@pytest.fixture
def summary(record_property):
    def add(text: str) -> None:
        record_property("summary", text)
    return add


def pytest_runtest_logreport(report):
    if report.when == "call":
        _SUMMARIES.extend(v for k, v in report.user_properties if k == "summary")


def pytest_terminal_summary(terminalreporter):
    if _SUMMARIES:
        terminalreporter.section("figures")
        for text in _SUMMARIES:
            terminalreporter.write_line(text)


#: Files with a test of 30 s or more (`make test` lists its 20 slowest). They go first, so that
#: with the files spread over workers (pytest-xdist, --dist loadfile) none of them starts last
#: and holds the run up alone; the other files keep their order.
SLOW_FIRST = ("test_rig.py", "test_loopbench.py", "test_sweep.py", "test_keras2c_configs.py",
              "test_compile_zoo.py", "test_logs.py", "test_sweep_data.py", "test_closed_loop.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))
