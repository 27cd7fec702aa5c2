"""The torchvision backbones (ResNet, ViT), in a module of their own: importing torchvision
costs a trial worker about two seconds, so only trials of these models pay it (the catalog
loads a model's builder when a trial uses it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torchvision
from torch import nn

from mlsweep.catalog import TrialConfig
from mlsweep.trainer.models import ThreeChannels


def _weights(name: str, pretrained: str) -> Any:
    if pretrained != "imagenet":
        return None
    return torchvision.models.get_model_weights(name).DEFAULT


def resnet(name: str, input_shape: Sequence[int], pretrained: str) -> tuple[nn.Module, int]:
    """torchvision ResNet; for inputs under 64 px the stem becomes a 3x3 stride-1 conv without
    max-pooling, so CIFAR-sized images keep their spatial detail."""
    net = torchvision.models.get_model(name, weights=_weights(name, pretrained))
    if input_shape[-1] < 64:
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    features = net.fc.in_features
    net.fc = nn.Identity()
    return ThreeChannels(net), features


def vit_backbone(input_shape: Sequence[int], pretrained: str) -> tuple[nn.Module, int]:
    net = torchvision.models.vit_b_32(weights=_weights("vit_b_32", pretrained))
    features = net.heads.head.in_features
    net.heads = nn.Identity()
    return ThreeChannels(net, size=224), features


# Builders (mlsweep.catalog.models names them), as in mlsweep.trainer.models.


def resnet18(c: TrialConfig, shape: Sequence[int]) -> tuple[nn.Module, int]:
    return resnet("resnet18", shape, c.pretrained)


def resnet50(c: TrialConfig, shape: Sequence[int]) -> tuple[nn.Module, int]:
    return resnet("resnet50", shape, c.pretrained)


def vit_b_32(c: TrialConfig, shape: Sequence[int]) -> tuple[nn.Module, int]:
    return vit_backbone(shape, c.pretrained)
