"""Shared fixtures: seeded rng, socket endpoints that never clash, path to shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def ipc_endpoints(tmp_path_factory: pytest.TempPathFactory):
    """A factory of unique ipc:// endpoints (no TCP port clashes between parallel test runs)."""
    base = tmp_path_factory.mktemp("ipc")
    counter = iter(range(10_000))

    def make(name: str = "ep") -> str:
        return f"ipc://{base}/{name}-{os.getpid()}-{next(counter)}"

    return make
