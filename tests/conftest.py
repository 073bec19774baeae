"""Shared test plumbing: the conformance tests' counts are printed in the
terminal summary, so they show up in every pytest run (CI included)."""
import pytest

_CONFORMANCE = []


@pytest.fixture(scope="session")
def conformance_summary():
    return _CONFORMANCE


def pytest_terminal_summary(terminalreporter):
    if _CONFORMANCE:
        terminalreporter.section("CPython multiprocessing suite (tests/conformance)")
        for line in _CONFORMANCE:
            terminalreporter.write_line(line)
