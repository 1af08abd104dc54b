"""The box detector: an anchor-free CenterNet (centre heatmaps, sizes, offsets), its targets, loss and decoding.

Zhou, Wang & Krähenbühl 2019, "Objects as Points" (CenterNet): an object is the peak of its class's centre
heatmap at output stride 4; two more maps give its size and the sub-pixel offset of its centre. Decoding is a
3x3 max-pool (a peak is its neighbourhood's maximum: no box NMS) and the top-k peaks. The trunk is one of
training.backbones (SmallCNN for tiny inputs, a ResNet for real ones, with torchvision's names so pretrained
weights load as the classifier's do); a small top-down feature pyramid (Lin et al. 2017, "Feature Pyramid
Networks") brings its deepest features back to stride 4, where CenterNet's ResNet variant uses deconvolutions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.backbones import ResNet, create_model
from training.model import SmallCNN

ARCH = "CenterNet"
# The output stride and the loss weights of the paper (Section 4: stride R = 4; lambda_size 0.1, lambda_off 1).
STRIDE = 4
SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0
# The focal loss exponents of the paper's eq. 1 (alpha = 2, beta = 4, from CornerNet).
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
# The heatmap's initial bias, -log((1 - 0.1) / 0.1): every location starts at a 0.1 prior (CenterNet's code,
# after RetinaNet's prior initialisation), so the loss of the many negatives does not swamp the first steps.
HEATMAP_PRIOR = 0.1
# The Gaussian around each centre: its radius keeps a box shifted within it at IoU >= 0.7 with the truth
# (CornerNet's gaussian_radius, as CenterNet's code computes it), sigma = diameter / 6.
GAUSSIAN_MIN_OVERLAP = 0.7
# At most this many objects per image are encoded, and the top 100 peaks are decoded (the paper's numbers).
MAX_OBJECTS = 128
TOP_K = 100
NECK_CHANNELS = 64


def _backbone_features(backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps at strides 4, 8, 16 and 32 of a SmallCNN or ResNet trunk."""
    if isinstance(backbone, SmallCNN):
        out = []
        for block in backbone.features:
            x = block(x)
            out.append(x)
        return out
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    out = []
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        x = layer(x)
        out.append(x)
    return out


def _trunk_channels(backbone: nn.Module) -> list[int]:
    """Channels of the four maps of _backbone_features."""
    if isinstance(backbone, SmallCNN):
        w = backbone.width
        return [w, 2 * w, 4 * w, 4 * w]
    if not isinstance(backbone, ResNet):
        raise TypeError(f"no detector trunk for {type(backbone).__name__}")
    return [_out_channels(layer) for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)]


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


def _branch(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, out, 1)
    )


class DetectionHead(nn.Module):
    """Top-down pyramid from the trunk's four maps to one stride-4 map, then the heatmap, size and offset maps."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = NECK_CHANNELS) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.heatmap = _branch(channels, num_classes)
        self.size = _branch(channels, 2)
        self.offset = _branch(channels, 2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.lateral[-1](feats[-1])
        for feat, lateral in zip(reversed(feats[:-1]), reversed(self.lateral[:-1]), strict=True):
            x = F.interpolate(x, size=feat.shape[-2:], mode="nearest") + lateral(feat)
        x = self.smooth(x)
        return self.heatmap(x), self.size(x), self.offset(x)


class CenterNet(nn.Module):
    """A CenterNet on a classifier trunk: forward gives heatmap logits (N, K, H/4, W/4), sizes and centre
    offsets (N, 2, H/4, W/4) in output cells; `embed` the trunk's pooled deepest features (N, D).

    The trunk is the classifier of training.backbones (its unused 1-class `fc` kept, so a classifier's or
    torchvision's state dict loads into `backbone` unchanged); the transfer modes freeze `backbone`'s stem
    (freeze-stem) or the whole trunk (linear-probe: only `head` trains)."""

    arch = ARCH
    head_name = "head"

    def __init__(self, backbone: str, num_classes: int, *, width: int = 32, neck_channels: int = NECK_CHANNELS) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone_name, self.num_classes, self.width = backbone, num_classes, width
        self.backbone = create_model(backbone, 1, width=width, dropout=0.0)
        self.stem_names = tuple(f"backbone.{name}" for name in self.backbone.stem_names)
        self.head = DetectionHead(_trunk_channels(self.backbone), num_classes, neck_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)

    @property
    def embedding_dim(self) -> int:
        return _trunk_channels(self.backbone)[-1]

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(heatmap logits, sizes, offsets) and the pooled embedding, from one pass over the trunk."""
        feats = _backbone_features(self.backbone, x)
        return self.head(feats), torch.flatten(self.pool(feats[-1]), 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled deepest trunk features (N, D) of a batch (N, 3, H, W): the space diversity is measured in."""
        return torch.flatten(self.pool(_backbone_features(self.backbone, x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head(_backbone_features(self.backbone, x))


def gaussian_radius(height: float, width: float, min_overlap: float = GAUSSIAN_MIN_OVERLAP) -> float:
    """The heatmap Gaussian's radius for a box of height x width output cells (CornerNet's gaussian_radius,
    the smallest of its three cases, exactly as CenterNet's code computes it)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, centre: tuple[int, int], radius: int) -> None:
    """Raise `heatmap` (H, W) in place to a Gaussian of `radius` cells (sigma = (2r + 1) / 6), 1 at `centre` (x, y)."""
    sigma = (2 * radius + 1) / 6
    ys, xs = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    blob = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    x, y = centre
    h, w = heatmap.shape
    left, right = min(x, radius), min(w - x, radius + 1)
    top, bottom = min(y, radius), min(h - y, radius + 1)
    window = heatmap[y - top : y + bottom, x - left : x + right]
    np.maximum(window, blob[radius - top : radius + bottom, radius - left : radius + right], out=window)


def encode_targets(
    xyxy: np.ndarray, classes: Sequence[int], num_classes: int, input_size: int, *, stride: int = STRIDE
) -> dict[str, np.ndarray]:
    """Training targets of one `input_size`-square image with boxes xyxy (N, 4) in its pixels and class indices
    (N,): heatmap (K, S, S) with S = input_size / stride, and per object slot (MAX_OBJECTS) its centre cell
    `index` (y * S + x), `size` (w, h) and `offset` in output cells, `mask` 1 where a slot holds an object."""
    side = input_size // stride
    heatmap = np.zeros((num_classes, side, side), np.float32)
    size = np.zeros((MAX_OBJECTS, 2), np.float32)
    offset = np.zeros((MAX_OBJECTS, 2), np.float32)
    index = np.zeros(MAX_OBJECTS, np.int64)
    mask = np.zeros(MAX_OBJECTS, np.float32)
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4) / stride
    for slot, (box, cls) in enumerate(zip(boxes[:MAX_OBJECTS], list(classes)[:MAX_OBJECTS], strict=True)):
        w, h = box[2] - box[0], box[3] - box[1]
        if w <= 0 or h <= 0:
            continue
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        cell = np.clip(np.floor(centre).astype(np.int64), 0, side - 1)
        draw_gaussian(heatmap[int(cls)], (int(cell[0]), int(cell[1])), max(0, int(gaussian_radius(h, w))))
        index[slot] = cell[1] * side + cell[0]
        size[slot] = (w, h)
        offset[slot] = centre - cell
        mask[slot] = 1.0
    return {"heatmap": heatmap, "index": index, "size": size, "offset": offset, "mask": mask}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's eq. 1: pixel-wise logistic focal loss of heatmap logits against Gaussian targets (1 at
    centres), normalised by the number of centres."""
    logits = logits.float()
    positive = target.eq(1).float()
    prob = torch.sigmoid(logits)
    pos = F.logsigmoid(logits) * (1 - prob).pow(FOCAL_ALPHA) * positive
    neg = F.logsigmoid(-logits) * prob.pow(FOCAL_ALPHA) * (1 - target).pow(FOCAL_BETA) * (1 - positive)
    return -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def _gather(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values (N, M, C) of maps (N, C, H, W) at flat cell indices (N, M)."""
    n, c = maps.shape[:2]
    flat = maps.reshape(n, c, -1).permute(0, 2, 1)
    return flat.gather(1, index.unsqueeze(-1).expand(-1, -1, c))


def _masked_l1(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = mask.unsqueeze(-1).expand_as(target)
    return (F.l1_loss(predicted.float() * weight, target * weight, reduction="sum")) / (weight.sum() + 1e-4)


def detection_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's loss (focal heatmap + SIZE_WEIGHT x L1 size + OFFSET_WEIGHT x L1 offset at the centres) of
    a batch, and its three parts as floats."""
    heatmap, size, offset = outputs
    focal = focal_loss(heatmap, targets["heatmap"])
    size_l1 = _masked_l1(_gather(size, targets["index"]), targets["size"], targets["mask"])
    offset_l1 = _masked_l1(_gather(offset, targets["index"]), targets["offset"], targets["mask"])
    total = focal + SIZE_WEIGHT * size_l1 + OFFSET_WEIGHT * offset_l1
    parts = {"heatmap": focal, "size": size_l1, "offset": offset_l1}
    return total, {name: float(value.detach()) for name, value in parts.items()}


class Detections(NamedTuple):
    """One image's decoded boxes: corners xyxy (k, 4) in input pixels, class indices (k,), scores (k,) in
    [0, 1] (low = doubtful), best first."""

    xyxy: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def decode_detections(
    heatmap_logits: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    *,
    stride: int = STRIDE,
    top_k: int = TOP_K,
) -> list[Detections]:
    """The top-k peaks of each image's heatmaps (N, K, H, W) as boxes: a peak is a cell equal to the maximum of
    its 3x3 neighbourhood (the paper's NMS-free decoding), its score the sigmoid of its logit, its box centred
    at (cell + offset) x stride with the predicted size x stride."""
    heat = torch.sigmoid(heatmap_logits.float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    n, k, h, w = heat.shape
    scores, flat = peaks.reshape(n, -1).topk(min(top_k, k * h * w))
    classes, cells = flat // (h * w), flat % (h * w)
    wh = _gather(size.float(), cells)
    off = _gather(offset.float(), cells)
    cx = (cells % w).float() + off[..., 0]
    cy = (cells // w).float() + off[..., 1]
    half_w, half_h = wh[..., 0].clamp(min=0) / 2, wh[..., 1].clamp(min=0) / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1) * stride
    return [
        Detections(boxes[i].cpu().numpy().astype(np.float64), classes[i].cpu().numpy(), scores[i].cpu().numpy())
        for i in range(n)
    ]


def scale_detections(found: Detections, width: int, height: int, input_size: int) -> Detections:
    """`found` in the pixels of the original width x height image (the input was resized to a square), boxes
    clipped to it; boxes left without area are dropped."""
    xyxy = found.xyxy * np.array([width, height, width, height], np.float64) / input_size
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return Detections(xyxy[keep], found.classes[keep], found.scores[keep])
