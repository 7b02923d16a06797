"""Shared fixtures: small tasks and models that train in seconds."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tmp_run_dir(tmp_path):
    return tmp_path / "run"
