"""The e2e fixtures for interop tests: `start_server` runs the real server in a process of its
own and stops it at teardown, and the report hook lets that teardown print the server's output
when a test failed (tests/e2e/conftest.py has both)."""

from tests.e2e.conftest import pytest_runtest_makereport, start_server

__all__ = ["pytest_runtest_makereport", "start_server"]
