"""Shared test fixtures: real data from ../shared, skipped with the reason when absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared").resolve()


def shared_file(rel: str) -> Path:
    """Path of ``../shared/<rel>``; skips the test when it is missing."""
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not found (the ../shared reference data is absent)")
    return path


@pytest.fixture(scope="session")
def sekd_weights() -> Path:
    return shared_file("weights/sekd.pth")


@pytest.fixture(scope="session")
def sekd_reference() -> dict:
    with np.load(shared_file("weights/sekd_reference.npz")) as f:
        return {k: f[k] for k in f.files}
