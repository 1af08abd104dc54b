"""Backbones: ResNet-18/34/50 in plain torch with torchvision's module and parameter names, and the model factory.

The names (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0, fc, ...) are torchvision's `torchvision.models.resnet`
layout, which timm's `resnet18/34/50` share, so a state dict saved by either loads unchanged
(training.weights). The blocks are torchvision's "v1.5" (Bottleneck strides in its 3x3 conv), the variant
both libraries ship as resnet50.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from training.model import SmallCNN

Backbone = Literal["small-cnn", "resnet18", "resnet34", "resnet50"]
BACKBONES: tuple[str, ...] = ("small-cnn", "resnet18", "resnet34", "resnet50")


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision's v1.5), 1x1 expand by 4, with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# Blocks per stage: He et al. 2015, Table 1 (torchvision's resnet18/34/50 builders use the same).
LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A ResNet classifier with torchvision's names; `embed` is the pooled features before `fc`."""

    # What the transfer modes freeze (training.transfer): the stem, and everything but the head.
    stem_names: tuple[str, ...] = ("conv1", "bn1")
    head_name = "fc"

    def __init__(self, arch: str, num_classes: int) -> None:
        super().__init__()
        if arch not in LAYOUTS:
            raise ValueError(f"unknown ResNet {arch!r}; use one of {sorted(LAYOUTS)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        block, counts = LAYOUTS[arch]
        self.arch, self.num_classes = arch, num_classes
        self._c = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, 64, counts[0])
        self.layer2 = self._stage(block, 128, counts[1], stride=2)
        self.layer3 = self._stage(block, 256, counts[2], stride=2)
        self.layer4 = self._stage(block, 512, counts[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        # torchvision's initialisation: He (fan_out) for convs, BN at identity; Linear keeps torch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._c != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._c, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        blocks = [block(self._c, planes, stride, downsample)]
        self._c = planes * block.expansion
        blocks += [block(self._c, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    @property
    def embedding_dim(self) -> int:
        return self.fc.in_features

    @property
    def head(self) -> nn.Linear:
        """The classifier (`fc`), under the name pool scoring uses for every model."""
        return self.fc

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled layer4 features (N, 512 x expansion) of a batch (N, 3, H, W)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


def create_model(backbone: str, num_classes: int, *, width: int = 32, dropout: float = 0.2) -> nn.Module:
    """An untrained classifier: SmallCNN (`width`, `dropout`) for "small-cnn", else the named ResNet."""
    if backbone == "small-cnn":
        return SmallCNN(num_classes, width=width, dropout=dropout)
    if backbone in LAYOUTS:
        return ResNet(backbone, num_classes)
    raise ValueError(f"unknown backbone {backbone!r}; use one of {list(BACKBONES)}")
