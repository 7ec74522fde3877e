"""sekd_plugin.models.checkpoint.safe_torch_load: the one torch.load, every failure one line."""

from __future__ import annotations

import pytest
import torch

from sekd_plugin.common.errors import CheckpointError
from sekd_plugin.models.checkpoint import load_state_dict, safe_torch_load


def test_safe_torch_load_returns_plain_containers_and_names_bad_files(tmp_path):
    path = tmp_path / "state.pth"
    torch.save({"format": 1, "weights": {"w": torch.ones(2)}, "history": "[]"}, path)
    assert safe_torch_load(path)["history"] == "[]"
    with pytest.raises(CheckpointError, match="does not contain a state dict"):
        load_state_dict(path)
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        safe_torch_load(tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        safe_torch_load(tmp_path / "missing.pth")
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"^.*cut.pth: damaged PyTorch checkpoint \([^\n]*\)$"):
        safe_torch_load(truncated)
