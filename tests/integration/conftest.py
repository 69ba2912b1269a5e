"""Every test in this directory talks to the lab's PostgreSQL: bring the lab up first."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def _lab_is_up(lab):
    return lab
