"""The memory-lean SegResNet forward gives the stock forward's logits and labels, leaves its input
alone, and never runs a network it does not know. (Its memory is measured by bench/: rss_both_peak_mb.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.models import segresnet_lean
from inference.models.adapters import adapter_for
from inference.models.loader import build_network
from inference.models.registry import BRATS_SEGRESNET, WHOLEBODY_CT_SEGRESNET
from inference.models.segresnet_lean import lean_forward, supports_lean
from inference.volume.segment import brats_labels_from_logits


def _head_like(channels: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """A bright ellipsoid with a brighter blob in a zero background, with noise: not a random field."""
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
    inside = (grid**2).sum(axis=0) < 0.6
    blob = ((grid - 0.3) ** 2).sum(axis=0) < 0.05
    rng = np.random.default_rng(3)
    data = [
        np.where(inside, 1.0 + 0.3 * c, 0.0) + 2.0 * blob + rng.normal(0, 0.1, shape) * inside for c in range(channels)
    ]
    return torch.from_numpy(np.stack(data)[None].astype(np.float32))


@pytest.mark.parametrize("slab_values", [segresnet_lean.SLAB_VALUES, 20_000, 1])
@pytest.mark.parametrize("spec", [BRATS_SEGRESNET, WHOLEBODY_CT_SEGRESNET], ids=lambda s: s.model_id)
def test_lean_forward_equals_the_stock_forward(spec, slab_values, monkeypatch) -> None:
    # 20,000 values: slabs of a few planes, so the halo between slabs and at both edges is used;
    # 1: one plane per slab.
    monkeypatch.setattr(segresnet_lean, "SLAB_VALUES", slab_values)
    network = build_network(spec)
    x = _head_like(spec.in_channels, (40, 32, 24))
    before = x.clone()
    assert supports_lean(network)
    with torch.inference_mode():
        stock = network(x)
        lean = adapter_for(spec).segment_window(spec, network, x)
    assert torch.equal(x, before)  # the caller's window is not written into
    assert lean.shape == stock.shape
    assert torch.allclose(lean, stock, atol=1e-5, rtol=1e-5), float((lean - stock).abs().max())
    if spec.output_kind == "sigmoid-multilabel":
        labels_stock, labels_lean = brats_labels_from_logits(stock[0]), brats_labels_from_logits(lean[0])
    else:
        labels_stock, labels_lean = stock[0].argmax(0), lean[0].argmax(0)
    # Only voxels whose decision sits within rounding of the threshold (or of a tie) could differ.
    if spec.output_kind == "sigmoid-multilabel":
        undecided = (stock[0].abs() < 1e-4).any(0)
    else:
        top2 = stock[0].topk(2, dim=0).values
        undecided = (top2[0] - top2[1]) < 1e-4
    assert undecided.float().mean() < 0.01
    assert torch.equal(labels_stock[~undecided], labels_lean[~undecided])


def test_unknown_configurations_run_the_stock_forward() -> None:
    from monai.networks.nets import SegResNet

    instance_norm = SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=2, norm="instance").eval()
    training = build_network(BRATS_SEGRESNET).train()
    assert not supports_lean(instance_norm) and not supports_lean(training)
    assert not supports_lean(torch.nn.Conv3d(1, 1, 3))
    x = _head_like(1, (16, 16, 16))
    with torch.inference_mode():
        assert torch.equal(lean_forward(instance_norm, x), instance_norm(x))
    # Outside inference mode (autograd on) the stock forward runs too: slabs written in place would break gradients.
    y = lean_forward(build_network(WHOLEBODY_CT_SEGRESNET), x)
    assert y.requires_grad
