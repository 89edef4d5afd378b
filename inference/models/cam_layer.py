"""The explicit CAM target layer added to the hooked copy of the network (imports torch)."""

from __future__ import annotations

import torch


class PostReLU(torch.nn.Module):
    """ReLU whose output is a fresh tensor, so torchxrayvision's later in-place ReLU (a no-op on
    it) neither changes what the CAM hook recorded nor breaks the backward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * 1.0
