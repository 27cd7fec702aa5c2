"""Embedding networks: shapes, unit norm, the paper's layer structure, frozen backbones and
pretrained weights (from a file the test writes; ImageNet only offline, as a clean error)."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from mlsweep import catalog
from mlsweep.catalog import TrialConfig
from mlsweep.errors import UserError
from mlsweep.trainer.models import EmbeddingNet, build_model

EMB = 16
# Per model: an input shape it serves in a sweep, and a batch size small enough for the CPU.
SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "mlp": ((20,), 4),
    "convnet": ((1, 28, 28), 4),
    "resnet18": ((3, 32, 32), 2),
    "resnet50": ((3, 16, 16), 1),  # the small-input stem too; 16 px keeps it quick
    "vit_b_32": ((3, 32, 32), 1),  # resized to 224 inside; one sample keeps it quick
}


def model(name: str, shape: tuple[int, ...], **settings: Any) -> EmbeddingNet:
    torch.manual_seed(0)
    config = TrialConfig.from_mapping({"model": name, "embedding_dim": EMB, **settings})
    return build_model(config, shape)


def test_every_model_has_a_shape_here() -> None:
    assert set(catalog.MODELS) == set(SHAPES)


@pytest.mark.parametrize("name", list(catalog.MODELS))
def test_output_is_unit_norm_embedding(name: str) -> None:
    shape, n = SHAPES[name]
    net = model(name, shape).eval()
    with torch.no_grad():
        out = net(torch.randn(n, *shape))
    assert out.shape == (n, EMB)
    assert torch.allclose(out.norm(dim=1), torch.ones(n), atol=1e-5)


def linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_mlp_layer_sizes() -> None:
    net = model("mlp", (10,), hidden_sizes=[32, 24, 8])
    assert linear_sizes(net) == [(10, 32), (32, 24), (24, 8), (8, EMB)]
    assert net(torch.randn(3, 10)).shape == (3, EMB)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_convnet_is_the_papers_network(shape: tuple[int, int, int]) -> None:
    """conv32-pool-conv64-pool-fc128-emb."""
    net = model("convnet", shape)
    channels, height, _ = shape
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in net.modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(channels, 32, (3, 3)), (32, 64, (3, 3))]
    pooled = height // 4  # two 2x2 poolings, 'same' convolutions
    assert linear_sizes(net) == [(64 * pooled * pooled, 128), (128, EMB)]
    kinds = [type(m).__name__ for m in net.backbone]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                     "Linear", "ReLU"]
    assert net(torch.randn(2, *shape)).shape == (2, EMB)


def layer4_size(net: EmbeddingNet, shape: tuple[int, ...]) -> tuple[int, ...]:
    seen: list[tuple[int, ...]] = []
    hook = net.backbone.net.layer4.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        net.eval()(torch.randn(1, *shape))
    hook.remove()
    return tuple(seen[0])


def test_resnet18_small_input_stem() -> None:
    net = model("resnet18", (3, 32, 32))
    stem = net.backbone.net.conv1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert isinstance(net.backbone.net.maxpool, nn.Identity)
    # 32 px → 4x4 after layer4 (strides of layers 2-4 only), where the ImageNet stem gives 1x1.
    assert layer4_size(net, (3, 32, 32)) == (1, 512, 4, 4)
    assert linear_sizes(net) == [(512, EMB)]


def test_resnet18_keeps_the_imagenet_stem_on_large_inputs() -> None:
    net = model("resnet18", (3, 96, 96))
    assert net.backbone.net.conv1.kernel_size == (7, 7)
    assert not isinstance(net.backbone.net.maxpool, nn.Identity)
    assert layer4_size(net, (3, 96, 96)) == (1, 512, 3, 3)


def test_torchvision_models_take_grey_images() -> None:
    net = model("resnet18", (1, 28, 28)).eval()
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, EMB)


def test_freeze_backbone_trains_only_the_head() -> None:
    net = model("resnet18", (3, 32, 32), freeze_backbone=True)
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    assert net.training and net.head.weight.grad is not None
    # Weights and BatchNorm running statistics alike: the backbone does not move.
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unfrozen_backbone_trains() -> None:
    net = model("resnet18", (3, 32, 32)).train()
    assert all(p.requires_grad for p in net.parameters()) and net.backbone.training
    before = net.backbone.net.bn1.running_mean.clone()
    net(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, net.backbone.net.bn1.running_mean)


def test_pretrained_path_loads_a_saved_state_dict(tmp_path: Path) -> None:
    source = model("mlp", (10,), hidden_sizes=[12])
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone.state_dict(), path)
    torch.manual_seed(1)  # another initialisation, which the file must overwrite
    loaded = build_model(TrialConfig.from_mapping({"model": "mlp", "hidden_sizes": [12], "embedding_dim": EMB,
                                                   "pretrained": str(path)}), (10,))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value)
    assert not torch.equal(loaded.head.weight, source.head.weight)  # the head stays fresh


def test_pretrained_path_takes_torchvisions_resnet_file_on_small_inputs(tmp_path: Path) -> None:
    """A local copy of torchvision's weights (what `pretrained: imagenet` would fetch): all
    tensors load except the 7x7 conv1, which the small-input stem replaces."""
    torch.manual_seed(2)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = model("resnet18", (3, 32, 32), pretrained=str(path))
    inner = net.backbone.net
    assert torch.equal(inner.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(inner.bn1.running_var, reference.bn1.running_var)
    assert inner.conv1.weight.shape == (64, 3, 3, 3)


def test_pretrained_path_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a file"):
        model("mlp", (10,), pretrained=str(tmp_path / "missing.pt"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"something.else": torch.zeros(3)}, foreign)
    with pytest.raises(UserError, match="holds no weights"):
        model("mlp", (10,), pretrained=str(foreign))


def test_imagenet_offline_is_a_one_line_user_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No network here and no cached weights (empty TORCH_HOME); the fetch fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(UserError) as err:
        model("resnet18", (3, 32, 32), pretrained="imagenet")
    assert len(err.value.lines) == 1 and "\n" not in str(err.value)
    assert "resnet18" in str(err.value) and "pretrained: PATH" in str(err.value)


def test_imagenet_weights_do_not_exist_for_the_papers_networks() -> None:
    with pytest.raises(UserError, match="only for torchvision models"):
        model("convnet", (1, 28, 28), pretrained="imagenet")
