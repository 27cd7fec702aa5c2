"""A pack of embedding networks as one module with a leading member dimension.

Each member's network is first built as a solo EmbeddingNet (models.build_model, under that
member's seed), then its weights are stacked: a parameter of the pack is [members, ...] and
member i's slice is exactly its solo parameter. Inputs and outputs are [members, batch, ...].

Linear layers run as one batched matmul (torch.baddbmm) over all members (a pack of one as a
batch of two, see PackedLinear); convolutions run
member by member on their weight slices: a grouped convolution over the pack would be one
call, but torch's CPU kernels then give results that depend on the number of groups (about
1e-6 relative), and a member's numbers must not depend on its pack. Networks that cannot be
stacked (torchvision backbones) run as packs of one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsweep.trainer.models import EmbeddingNet


def _stack(tensors: Sequence[Tensor | None]) -> nn.Parameter | None:
    if tensors[0] is None:
        return None
    return nn.Parameter(torch.stack([t.detach() for t in tensors]),
                        requires_grad=tensors[0].requires_grad)


class PackedLinear(nn.Module):
    """Members' nn.Linear layers: weight [P, out, in], bias [P, out]; x [P, B, in]."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = _stack([layer.weight for layer in layers])
        self.bias = _stack([layer.bias for layer in layers])

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        if len(weight) == 1:
            # For a single matrix torch's bmm takes the plain gemm path, whose rounding differs
            # from its batched path for long rows (in_features >= ~784 on the CPU, ~4e-6
            # relative): a pack of one runs as a batch of two (itself twice) so that a member's
            # numbers do not depend on its pack's size. The copy's gradient is exactly zero.
            return PackedLinear._apply_to(torch.cat([x, x]), torch.cat([weight, weight]),
                                          None if bias is None else torch.cat([bias, bias]))[:1]
        return PackedLinear._apply_to(x, weight, bias)

    @staticmethod
    def _apply_to(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class PackedConv2d(nn.Module):
    """Members' nn.Conv2d layers, stacked weights [P, out, in, k, k]; x [P, B, C, H, W]."""

    def __init__(self, layers: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = layers[0]
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.weight = _stack([layer.weight for layer in layers])
        self.bias = _stack([layer.bias for layer in layers])

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([
            F.conv2d(x[i], self.weight[i], None if self.bias is None else self.bias[i],
                     self.stride, self.padding, self.dilation)
            for i in range(len(self.weight))])


class MemberwiseLayer(nn.Module):
    """A parameter-free layer applied to [P * B, ...]: the same result for every member."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def _pack_layer(layers: Sequence[nn.Module]) -> nn.Module:
    first = layers[0]
    if isinstance(first, nn.Linear):
        return PackedLinear(layers)
    if isinstance(first, nn.Conv2d):
        return PackedConv2d(layers)
    if isinstance(first, nn.Flatten):
        return nn.Flatten(2)
    if isinstance(first, nn.ReLU | nn.MaxPool2d):
        return MemberwiseLayer(first)
    raise TypeError(f"cannot pack a {type(first).__name__} layer")


class PackedHead(nn.Module):
    """The embedding head of a pack: linear to embedding_dim, then L2 normalisation. A module
    of its own, so that trials training only the head (on cached features) pack it alone."""

    def __init__(self, heads: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.linear = PackedLinear(heads)

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.linear(features), dim=-1)


class PackedNet(nn.Module):
    """Stacked backbones (mlp, convnet) and head of several EmbeddingNets: [P, B, ...] in,
    [P, B, embedding_dim] out."""

    def __init__(self, nets: Sequence[EmbeddingNet]) -> None:
        super().__init__()
        self.members = len(nets)
        backbones = [net.backbone for net in nets]
        self.backbone = nn.Sequential(*(_pack_layer(layers) for layers in zip(*backbones, strict=True)))
        self.head = PackedHead([net.head for net in nets])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def embed_shared(self, x: Tensor) -> Tensor:
        """Every member's embeddings of the same inputs [B, ...] (an expanded view, no copy)."""
        return self(x.expand(self.members, *x.shape))


class SoloNet(nn.Module):
    """A network that cannot be stacked, as a pack of one: [1, B, ...] in and out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.members = 1
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x[0]).unsqueeze(0)

    def embed_shared(self, x: Tensor) -> Tensor:
        return self.net(x).unsqueeze(0)


def pack_models(nets: Sequence[EmbeddingNet]) -> PackedNet | SoloNet:
    """The members' networks as one module; a torchvision backbone only as a pack of one."""
    try:
        return PackedNet(nets)
    except TypeError:
        if len(nets) != 1:
            raise
        return SoloNet(nets[0])
