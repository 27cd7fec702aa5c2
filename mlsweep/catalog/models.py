"""The networks: one entry each, with a pointer to its backbone builder.

A builder is `build(config, input_shape) -> (backbone nn.Module, feature size)`; the trainer
puts the linear, L2-normalised embedding head on top. A new model is one builder plus one entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    doc: str
    builder: str  # "module:function", see catalog.lazy
    imagenet: bool = False  # torchvision has ImageNet weights for it (`pretrained: imagenet`)


_B = "mlsweep.trainer.models:"
_T = "mlsweep.trainer.torchvision_models:"

MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in [
        ModelInfo("mlp", "fully connected layers (`hidden_sizes`) then the embedding head", _B + "mlp"),
        ModelInfo("convnet", "the paper's conv32-pool-conv64-pool-fc128 then the embedding head",
                  _B + "convnet"),
        ModelInfo("resnet18", "torchvision ResNet-18, stem adapted to small inputs", _T + "resnet18",
                  imagenet=True),
        ModelInfo("resnet50", "torchvision ResNet-50, stem adapted to small inputs", _T + "resnet50",
                  imagenet=True),
        ModelInfo("vit_b_32", "torchvision ViT-B/32 (inputs resized to 224)", _T + "vit_b_32",
                  imagenet=True),
    ]
}
