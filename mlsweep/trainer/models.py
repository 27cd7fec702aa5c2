"""Embedding networks: a backbone, a linear embedding head, L2-normalised output. The
torchvision backbones are built in mlsweep.trainer.torchvision_models (torchvision takes two
seconds to import, which a trial of the other models does not pay)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsweep.catalog import MODELS, TrialConfig, load
from mlsweep.errors import UserError


class EmbeddingNet(nn.Module):
    """backbone → linear head to `embedding_dim` → L2 normalisation."""

    def __init__(self, backbone: nn.Module, features: int, embedding_dim: int,
                 frozen_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features, embedding_dim)
        self.frozen_backbone = frozen_backbone
        if frozen_backbone:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> EmbeddingNet:
        # A frozen backbone stays in eval mode: in train mode its BatchNorm layers would still
        # update their running statistics (and use batch statistics), so it would not be frozen.
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)


class HeadOnly(nn.Module):
    """An EmbeddingNet's head alone, for inputs that are already its frozen backbone's
    features (the feature cache): the same parameters and the same output as the whole net."""

    def __init__(self, net: EmbeddingNet) -> None:
        super().__init__()
        self.head = net.head

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.head(features), dim=1)


def mlp_backbone(input_shape: Sequence[int], hidden_sizes: Sequence[int]) -> tuple[nn.Module, int]:
    """Fully connected ReLU layers (the seed paper's 128-64 before its 32-d embedding)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers), width


def convnet_backbone(input_shape: Sequence[int]) -> tuple[nn.Module, int]:
    """The seed paper's network: conv32-pool-conv64-pool-fc128."""
    channels, height, width = input_shape
    flat = 64 * (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(),
    ), 128


class ThreeChannels(nn.Module):
    """Grey images repeated to RGB, and (for ViT) resized to the size the network expects."""

    def __init__(self, net: nn.Module, size: int | None = None) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(x)


# Builders, one per catalog entry (mlsweep.catalog.models names them): the trial's resolved
# config and one sample's shape in, the backbone and its feature size out.


def mlp(c: TrialConfig, shape: Sequence[int]) -> tuple[nn.Module, int]:
    return mlp_backbone(shape, c.hidden_sizes)  # resolve keeps hidden_sizes for the mlp


def convnet(c: TrialConfig, shape: Sequence[int]) -> tuple[nn.Module, int]:
    return convnet_backbone(shape)


def build_model(config: TrialConfig, input_shape: Sequence[int]) -> EmbeddingNet:
    """The trial's network; `pretrained` is none, imagenet (torchvision weights) or a file."""
    name, pretrained = config.model, config.pretrained
    if pretrained == "imagenet" and not MODELS[name].imagenet:
        raise UserError(f"pretrained: imagenet weights exist only for torchvision models, not {name}")
    try:
        backbone, features = load(MODELS[name].builder)(config, input_shape)
    except (OSError, RuntimeError) as err:  # weights that cannot be fetched offline
        raise UserError(f"model {name}: cannot load imagenet weights ({err}); place them in "
                        f"{torch.hub.get_dir()}/checkpoints or use pretrained: PATH") from None
    if pretrained not in ("none", "imagenet"):
        _load_state(backbone, Path(pretrained).expanduser())
    return EmbeddingNet(backbone, features, config.embedding_dim, config.freeze_backbone)


def _load_state(backbone: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"pretrained: {path} is not a file (give none, imagenet or a state dict path)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    inner = backbone.net if isinstance(backbone, ThreeChannels) else backbone
    # Tensors of another shape are skipped: torchvision's own ResNet file has a 7x7 conv1 where
    # the small-input stem has 3x3, which imagenet weights also lose (load_state_dict would raise).
    own = inner.state_dict()
    state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
    missing, _ = inner.load_state_dict(state, strict=False)
    if len(missing) == len(inner.state_dict()):
        raise UserError(f"pretrained: {path} holds no weights of this backbone")
