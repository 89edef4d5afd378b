"""MONAI SegResNet's forward pass in inference, computed so that few full-size tensors live at once.

The stock forward of the BraTS bundle's network on its 240x240x160 window keeps, at full
resolution (16 channels, 590 MB each), the skip connection, the residual input, the group-norm
output and the convolution output alive together, and the decoder adds a new tensor for every
sum. Here, with the same modules and weights:

* group norm and ReLU are folded into each 3x3x3 convolution's input, computed one slab of
  planes (with a one-plane halo) at a time from the norm's statistics, so their full-size
  outputs never exist;
* the second convolution of a residual block adds its output into the block input slab by slab
  (``x + conv(...)``, the same sum), so the block needs one new full-size tensor, not three;
* the decoder adds each upsampled tensor into its skip connection in place and lets the skip go.

The results equal the stock forward's up to float rounding (the same operations, summed in
slabs); ``lean_forward`` falls back to the stock forward for any configuration it does not know
(training mode, another norm or activation, other kernels), so it can never run a different model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

Network = Any

SLAB_VALUES = 8_000_000  # float32 values per slab of a norm+ReLU input (32 MB)


def supports_lean(network: Network) -> bool:
    """Whether ``network`` is a SegResNet in eval mode built from the blocks ``lean_forward`` knows."""
    import torch
    from monai.networks.blocks.segresnet_block import ResBlock
    from monai.networks.nets import SegResNet

    if not isinstance(network, SegResNet) or network.training:
        return False
    blocks = [m for m in network.modules() if isinstance(m, ResBlock)]
    for block in blocks:
        if not (
            isinstance(block.norm1, torch.nn.GroupNorm)
            and isinstance(block.norm2, torch.nn.GroupNorm)
            and block.norm1.affine
            and block.norm2.affine
            and isinstance(block.act, torch.nn.ReLU)
            and _is_same_conv(block.conv1.conv)
            and _is_same_conv(block.conv2.conv)
        ):
            return False
    if network.use_conv_final:
        norm, act, conv = network.conv_final
        if not (
            isinstance(norm, torch.nn.GroupNorm)
            and norm.affine
            and isinstance(act, torch.nn.ReLU)
            and _is_pointwise(conv.conv)
        ):
            return False
    return bool(blocks)


def _is_same_conv(conv: Network) -> bool:
    """A 3-D convolution that keeps the size: odd kernel, stride 1, 'same' zero padding, one group."""
    import torch

    return (
        isinstance(conv, torch.nn.Conv3d)
        and all(k % 2 == 1 for k in conv.kernel_size)
        and tuple(conv.padding) == tuple(k // 2 for k in conv.kernel_size)
        and tuple(conv.stride) == (1, 1, 1)
        and tuple(conv.dilation) == (1, 1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _is_pointwise(conv: Network) -> bool:
    import torch

    return (
        isinstance(conv, torch.nn.Conv3d) and tuple(conv.kernel_size) == (1, 1, 1) and tuple(conv.stride) == (1, 1, 1)
    )


def lean_forward(network: Network, x: "torch.Tensor") -> "torch.Tensor":
    """``network(x)`` for a SegResNet in inference, with a fraction of its peak memory. ``x`` is not changed."""
    import torch

    if not supports_lean(network) or torch.is_grad_enabled():
        return network(x)
    x = network.convInit(x)  # dropout (training only) is skipped in eval mode, as in the stock forward
    skips: list[torch.Tensor] = []
    for down in network.down_layers:
        x = down[0](x)  # the strided convolution that halves the grid (Identity on the first level)
        for block in list(down)[1:]:
            x = _res_block_(block, x)
        skips.append(x)
    skips.pop()  # the deepest level's output is ``x`` itself
    for up, up_layer in zip(network.up_samples, network.up_layers):
        skip = skips.pop()
        upsampled = up(x)
        del x
        skip.add_(upsampled)  # up(x) + skip, as the stock decoder sums them
        del upsampled
        x = skip
        del skip
        for block in up_layer:
            x = _res_block_(block, x)
    if network.use_conv_final:
        norm, _act, conv = network.conv_final
        x = _norm_relu_conv(norm, conv.conv, x)
    return x


def _res_block_(block: Network, x: "torch.Tensor") -> "torch.Tensor":
    """A ResBlock (norm, ReLU, conv, norm, ReLU, conv, plus the input), written into ``x``."""
    hidden = _norm_relu_conv(block.norm1, block.conv1.conv, x)
    return _norm_relu_conv(block.norm2, block.conv2.conv, hidden, out=x)


def _norm_relu_conv(
    norm: Network, conv: Network, x: "torch.Tensor", out: "torch.Tensor | None" = None
) -> "torch.Tensor":
    """``conv(relu(norm(x)))``, one slab of planes along the first spatial axis at a time.

    With ``out`` the result is added into ``out`` (which must not be ``x``) and ``out`` returned.
    """
    import torch
    import torch.nn.functional as F

    scale, shift = _group_norm_affine(norm, x)
    batch, channels, depth, *plane = x.shape
    halo = conv.kernel_size[0] // 2
    planes = max(1, SLAB_VALUES // max(1, batch * channels * plane[0] * plane[1]))
    padding = (0, *conv.padding[1:])  # the first spatial axis is padded by hand, at the volume's edges only
    if out is None:
        out = torch.empty((batch, conv.out_channels, depth, *plane), dtype=x.dtype, device=x.device)
        accumulate = False
    else:
        accumulate = True
    for start in range(0, depth, planes):
        stop = min(depth, start + planes)
        lo, hi = max(0, start - halo), min(depth, stop + halo)
        slab = torch.relu_(torch.addcmul(shift, x[:, :, lo:hi], scale))
        pad_lo, pad_hi = halo - (start - lo), halo - (hi - stop)
        if pad_lo or pad_hi:
            slab = F.pad(slab, (0, 0, 0, 0, pad_lo, pad_hi))
        result = F.conv3d(slab, conv.weight, conv.bias, 1, padding)
        del slab
        if accumulate:
            out[:, :, start:stop].add_(result)
        else:
            out[:, :, start:stop].copy_(result)
        del result
    return out


def _group_norm_affine(norm: Network, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per-channel (scale, shift) with ``norm(x) == x * scale + shift``, shaped to broadcast over ``x``."""
    import torch

    batch, channels = x.shape[:2]
    groups = norm.num_groups
    var, mean = torch.var_mean(x.reshape(batch, groups, -1), dim=2, correction=0)
    rstd = torch.rsqrt(var + norm.eps)  # (B, G)
    per_channel = channels // groups
    scale = rstd.repeat_interleave(per_channel, dim=1) * norm.weight[None, :]
    shift = norm.bias[None, :] - mean.repeat_interleave(per_channel, dim=1) * scale
    view = (batch, channels, 1, 1, 1)
    return scale.reshape(view), shift.reshape(view)
