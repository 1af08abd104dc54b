"""Starting a classifier from the pool's SimCLR encoder: its weights as pretrained weights, and the logistic head.

The encoder's backbone (training.encoders) has the classifier's own module names with a one-class head, so
its state dict loads through training.weights.fit_weights like a user's weights (the head is replaced). The
logistic head is a linear probe fitted by multinomial logistic regression (scikit-learn's L-BFGS) over the
frozen pooled features: the evaluation protocol of SimCLR itself (Chen et al. 2020, Section 4: "a linear
classifier is trained on top of the frozen base network"), convex and fitted in well under a second for a few
hundred labels, where SGD on the head needs many epochs to converge.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from corpus.store import DataRoot
from training.config import TrainConfig
from training.encoders import WEIGHTS_FILE, encoder_path, latest_encoder, read_encoder_metadata
from training.loop import FitState
from training.weights import LoadedWeights, WeightsError, load_weights

NEWEST = "newest"
# scikit-learn's LogisticRegression default C (inverse L2 strength), over standardised features.
PROBE_C = 1.0


def resolve_encoder(root: DataRoot, ref: str) -> str:
    """The encoder version `ref` names: "newest" (the most recently pretrained) or a version; ValueError when
    there is none."""
    if ref == NEWEST:
        version = latest_encoder(root)
        if version is None:
            raise ValueError("init_from_encoder='newest' but no encoder was pretrained (run `flywheel pretrain`)")
        return version
    read_encoder_metadata(root, ref)  # FileNotFoundError lists the encoders that exist
    return ref


def load_encoder_weights(root: DataRoot, ref: str, cfg: TrainConfig) -> tuple[LoadedWeights, str]:
    """The encoder's backbone as pretrained weights (source encoders/<version>/encoder.pt, its sha256) and its
    version; WeightsError when its backbone or width differs from the training config's."""
    version = resolve_encoder(root, ref)
    enc = read_encoder_metadata(root, version)["config"]
    width_matters = cfg.backbone == "small-cnn"
    if enc["backbone"] != cfg.backbone or (width_matters and enc["width"] != cfg.width):
        raise WeightsError(
            f"encoder {version} is a {enc['backbone']} (width {enc['width']}); the training config asks for "
            f"{cfg.backbone} (width {cfg.width}): set backbone/width to the encoder's"
        )
    return load_weights(encoder_path(version, WEIGHTS_FILE), root=root), version


def compute_features(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N, D) of `model.embed` in eval mode and the targets (N,)."""
    model.eval()
    feats, targets = [], []
    with torch.no_grad():
        for x, y in loader:
            feats.append(model.embed(x.to(device)).float().cpu().numpy())
            targets.append(np.asarray(y))
    f = np.concatenate(feats) if feats else np.zeros((0, model.embedding_dim), np.float32)
    return f, np.concatenate(targets) if targets else np.zeros(0, np.int64)


def fit_logistic_head(
    features: np.ndarray, targets: np.ndarray, n_classes: int, c: float = PROBE_C, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Weight (K, D) and bias (K,) of a multinomial logistic regression on `features` (N, D) -> `targets` (N,)
    in range(K). A class absent from `targets` gets a large negative bias; one class present: it always wins."""
    from sklearn.linear_model import LogisticRegression

    weight = np.zeros((n_classes, features.shape[1]), np.float32)
    bias = np.full(n_classes, -1e4, np.float32)
    present = np.unique(targets)
    if len(present) == 1:
        bias[present[0]] = 0.0
        return weight, bias
    clf = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(features, targets)
    if len(clf.classes_) == 2:  # binary: one weight vector for class 1; as logits, +-half of it
        coef = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        intercept = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        coef, intercept = clf.coef_, clf.intercept_
    weight[clf.classes_] = coef
    bias[clf.classes_] = intercept
    return weight, bias


def set_logistic_head(model: nn.Module, loader: DataLoader, device: torch.device, seed: int = 0) -> None:
    """Replace the model's head (`model.head_name`) by the logistic probe fitted on the loader's features.

    The features are standardised per dimension before the fit (scikit-learn's advice for L2-penalised
    logistic regression; measured 0.86-0.88 vs 0.50 test accuracy unstandardised on 18 LFW labels) and the
    standardisation is folded into the head, so the unchanged model computes the probe's logits."""
    features, targets = compute_features(model, loader, device)
    mean = features.mean(0) if len(features) else np.zeros(features.shape[1], np.float32)
    std = features.std(0) if len(features) else np.ones(features.shape[1], np.float32)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)  # a constant feature carries nothing: leave it
    head: nn.Linear = getattr(model, model.head_name)
    weight, bias = fit_logistic_head((features - mean) / std, targets, head.out_features, seed=seed)
    folded = weight / std
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(folded.astype(np.float32)))
        head.bias.copy_(torch.from_numpy((bias - folded @ mean).astype(np.float32)))


def prepare_weights(root: DataRoot, cfg: TrainConfig) -> tuple[LoadedWeights | None, str | None]:
    """The pretrained weights `cfg` names (user `weights`, or the encoder of `init_from_encoder`) and the
    encoder version they came from (None for user weights or none)."""
    if cfg.init_from_encoder:
        return load_encoder_weights(root, cfg.init_from_encoder, cfg)
    return (load_weights(cfg.weights, cfg.weights_sha256, root=root) if cfg.weights else None), None


def fit_head_on(model: nn.Module, train_ds: Dataset, eval_tf: object, device: torch.device, cfg: TrainConfig) -> None:
    """set_logistic_head over the train split seen through the eval transform (no augmentation: the probe
    protocol fits on the images as they are predicted)."""
    plain = copy.copy(train_ds)
    plain.transform, plain.seed = eval_tf, None
    set_logistic_head(model, DataLoader(plain, batch_size=cfg.batch_size), device, seed=cfg.seed)


def record_refit_val(state: FitState, val_accuracy: float | None, val_loss: float) -> None:
    """Make `state`'s val figures those of the model after the logistic refit, which is the one published: the
    best val (metrics.json "val_accuracy") and the val figures of the epoch whose weights were kept, whose SGD
    figures stay beside them as sgd_val_accuracy / sgd_val_loss (the refit replaces the head the SGD epoch
    trained, so those described a model nobody gets)."""
    state.best_val, state.best_score = val_accuracy, [val_accuracy, -val_loss]
    for record in state.history:
        if record["epoch"] == state.best_epoch:
            record.update(
                sgd_val_accuracy=record.get("val_accuracy"),
                sgd_val_loss=record.get("val_loss"),
                val_accuracy=val_accuracy,
                val_loss=val_loss,
                head_fit="logistic",
            )
