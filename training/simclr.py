"""SimCLR: self-supervised pretraining of a backbone on unlabeled images, and embedding images with it.

Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of Visual Representations"
(ICML): two random views of each image, a projection MLP, and the NT-Xent loss that pulls the two views of an
image together against the other 2N - 2 views of the batch. The loss is a dozen lines of torch, written here
rather than taken from lightly (MIT), which requires torchvision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info

from training.augment import build_transforms
from training.backbones import create_model
from training.config import SimCLRConfig
from training.data import EpochSampler, decode_image, mix_seed
from training.devices import loader_workers, make_loader, pick_device, pick_precision

# ImageNet statistics, as every recipe of the release (corpus.releases.recipes) normalises.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def build_views(size: int, seed: int | None = None) -> A.Compose:
    """The paper's augmentation (Appendix A) in albumentations: random resized crop (scale 0.08-1), horizontal
    flip, colour jitter with strength 1 (brightness/contrast/saturation 0.8, hue 0.2) applied with p=0.8,
    greyscale with p=0.2, Gaussian blur (sigma 0.1-2, kernel ~10% of the side) with p=0.5, then normalised."""
    kernel = max(3, (size // 10) | 1)
    return build_transforms(
        [
            {"__class_fullname__": "RandomResizedCrop", "scale": [0.08, 1.0], "p": 1.0},
            {"__class_fullname__": "HorizontalFlip", "p": 0.5},
            {
                "__class_fullname__": "ColorJitter",
                "brightness": 0.8,
                "contrast": 0.8,
                "saturation": 0.8,
                "hue": 0.2,
                "p": 0.8,
            },
            {"__class_fullname__": "ToGray", "p": 0.2},
            {"__class_fullname__": "GaussianBlur", "blur_limit": [kernel, kernel], "sigma_limit": [0.1, 2.0], "p": 0.5},
            {"__class_fullname__": "Normalize", "mean": list(_MEAN), "std": list(_STD), "p": 1.0},
        ],
        size,
        seed,
    )


def build_embedding_transform(size: int) -> A.Compose:
    """What an image goes through before it is embedded: resized to `size` x `size` and normalised."""
    return build_transforms(
        [
            {"__class_fullname__": "Resize", "p": 1.0},
            {"__class_fullname__": "Normalize", "mean": list(_MEAN), "std": list(_STD), "p": 1.0},
        ],
        size,
    )


# A border row or column is "bar" when no pixel in it differs from the corners' colour by more than this (of 255):
# JPEG ringing next to a black bar stays within ~10 at quality 75 (measured on bench/semantic_dedup.py's copies).
BORDER_TOLERANCE = 16


def trim_borders(image: np.ndarray, tolerance: int = BORDER_TOLERANCE) -> np.ndarray:
    """`image` (H, W, 3) uint8 without the uniform bars around it (letterboxing, pillarboxing, a flat frame):
    the rows and columns at its edges whose pixels all stay within `tolerance` of the median corner colour.
    An image that is all bar, or would keep under a quarter of its area, is returned whole."""
    corners = np.stack([image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]]).astype(np.int16)
    colour = np.median(corners, axis=0)
    content = (np.abs(image.astype(np.int16) - colour) > tolerance).any(axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return image
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) * (right - left) < image.shape[0] * image.shape[1] / 4:
        return image
    return image[top:bottom, left:right]


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class TwoViewDataset(Dataset):
    """Encoded images; key (epoch, i) gives two independently augmented views (CHW float tensors) of image i.

    The views are reseeded from (seed, epoch, worker), as ReleaseImageDataset does, so a run is repeatable."""

    def __init__(self, images: Sequence[bytes], record_ids: Sequence[str], views: A.Compose, seed: int) -> None:
        self._images, self._ids = list(images), list(record_ids)
        self.views, self.seed = views, seed
        self._seeded_for: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        info = get_worker_info()
        worker = info.id if info is not None else -1
        if self._seeded_for != (epoch, worker):
            self.views.set_random_seed(mix_seed(self.seed, epoch, worker))
            self._seeded_for = (epoch, worker)
        image = decode_image(self._images[i], self._ids[i])
        return _chw(self.views(image=image)["image"]), _chw(self.views(image=image)["image"])


class ProjectionHead(nn.Module):
    """The paper's g(.): Linear -> ReLU -> Linear, from the backbone's embedding to the contrastive space."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(inplace=True), nn.Linear(dim_in, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The NT-Xent loss (Chen et al. 2020, eq. 1) of paired projections z1, z2 (N, D): row i of z1 and row i of
    z2 are the positive pair, the other 2N - 2 rows the negatives; cosine similarity over `temperature`,
    averaged over all 2N anchors. Low is good; log(2N - 1) is chance."""
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 must both be (N >= 2, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z = nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # an anchor is never its own negative
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(sim, positives)


def _loader(ds: TwoViewDataset, cfg: SimCLRConfig, device: torch.device) -> tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(len(ds), cfg.seed)
    batch = min(cfg.batch_size, len(ds))
    # Dropping a short last batch keeps BatchNorm and the loss away from a batch of one.
    loader = make_loader(
        ds,
        batch,
        device=device,
        workers=loader_workers(cfg.num_workers, device),
        sampler=sampler,
        seed=cfg.seed,
        drop_last=len(ds) % batch == 1,
    )
    return loader, sampler


def pretrain_simclr(
    images: Sequence[bytes],
    record_ids: Sequence[str],
    cfg: SimCLRConfig | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[nn.Module, ProjectionHead, dict[str, Any]]:
    """Pretrain cfg.backbone on encoded `images` with SimCLR; (the backbone and the projection head, on the CPU
    in eval mode, and a report: device, precision, loss per epoch, seconds). `record_ids` name the images in
    decode errors. As in the paper, the backbone's features are the representation for downstream training;
    the head's output is the space the views were pulled together in (the more augmentation-invariant one)."""
    cfg = cfg or SimCLRConfig()
    if len(images) < 2:
        raise ValueError(f"SimCLR needs at least 2 images to contrast; the pool has {len(images)}")
    device = pick_device(cfg.device)
    amp_dtype = pick_precision(device, cfg.precision)
    ds = TwoViewDataset(images, record_ids, build_views(cfg.image_size, cfg.seed), cfg.seed)
    loader, sampler = _loader(ds, cfg, device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        backbone = create_model(cfg.backbone, 1, width=cfg.width, dropout=0.0).to(device)
        head = ProjectionHead(backbone.embedding_dim, cfg.projection_dim).to(device)
        params = [*backbone.parameters(), *head.parameters()]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        history = []
        for epoch in range(1, cfg.epochs + 1):
            sampler.set_epoch(epoch)
            history.append(
                _train_epoch(backbone, head, loader, optimizer, scaler, cfg, device, amp_dtype) | {"epoch": epoch}
            )
            schedule.step()
            if on_epoch is not None:
                on_epoch(history[-1])
    backbone.to("cpu").eval()
    head.to("cpu").eval()
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "history": history,
        "final_loss": history[-1]["loss"],
        "chance_loss": float(np.log(2 * min(cfg.batch_size, len(images)) - 1)),
        "seconds": round(sum(h["seconds"] for h in history), 3),
    }
    return backbone, head, report


def _train_epoch(
    backbone: nn.Module,
    head: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: SimCLRConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, float]:
    backbone.train()
    head.train()
    total, seen, started = 0.0, 0, time.perf_counter()
    for v1, v2 in loader:
        v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            z = head(backbone.embed(torch.cat([v1, v2])))
        loss = nt_xent_loss(z[: len(v1)], z[len(v1) :], cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(v1)
        seen += len(v1)
    return {"loss": total / max(seen, 1), "seconds": time.perf_counter() - started, "images": seen}


@torch.no_grad()
def embed_images(
    backbone: nn.Module,
    images: Sequence[bytes],
    record_ids: Sequence[str],
    *,
    image_size: int,
    batch_size: int = 256,
    device: str = "auto",
    head: nn.Module | None = None,
    trim: bool = True,
) -> np.ndarray:
    """L2-normalised embeddings (N, D) float32 of encoded `images` by `backbone.embed` (bars trimmed when
    `trim`, see trim_borders; resized, normalised), passed through the projection `head` when given, so a dot
    product is the cosine similarity. A broken image raises ImageDecodeError naming its record."""
    dev = pick_device(device)
    amp_dtype = pick_precision(dev, "auto")
    transform = build_embedding_transform(image_size)
    backbone = backbone.to(dev).eval()
    project = head.to(dev).eval() if head is not None else nn.Identity()
    out = []
    for start in range(0, len(images), batch_size):
        chunk = zip(images[start : start + batch_size], record_ids[start : start + batch_size], strict=True)
        decoded = (decode_image(data, rid) for data, rid in chunk)
        x = torch.stack([_chw(transform(image=trim_borders(a) if trim else a)["image"]) for a in decoded])
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            emb = project(backbone.embed(x.to(dev)))
        out.append(nn.functional.normalize(emb.float(), dim=1).cpu().numpy())
    backbone.to("cpu")
    project.to("cpu")
    dim = head.net[-1].out_features if head is not None else backbone.embedding_dim
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)
