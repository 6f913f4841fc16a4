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
