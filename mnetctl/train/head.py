"""The new classifier head, trained with numpy on cached features: dropout, then a linear layer (optionally
one hidden ReLU layer first); softmax cross-entropy with label smoothing, L2 weight decay, Adam or SGD with
momentum, a cosine learning-rate schedule, mini-batches, early stopping on the validation split (the best
epoch's weights are kept).

Distillation (`Distill`): each row may also carry a teacher's logits; the loss per row is then
alpha * (smoothed cross-entropy with its label) + (1 - alpha) * T^2 * KL(teacher_T || student_T), the `_T`
softmaxes taken at temperature T. A row labelled -1 (an image only the teacher labels) has the second term only."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import BadInput
from ..progress import ProgressFn, report


@dataclass(frozen=True)
class HeadSettings:
    epochs: int = 20
    batch_size: int = 32
    lr: float | None = None  # None: 1e-3 for adam, 0.01 for sgd
    optimizer: str = "adam"
    momentum: float = 0.9
    label_smoothing: float = 0.1
    dropout: float = 0.2
    weight_decay: float = 1e-4
    hidden: int = 0  # 0: no hidden layer
    patience: int = 5  # epochs without a better validation score before stopping
    seed: int = 0

    def check(self) -> "HeadSettings":
        if self.epochs < 1:
            raise BadInput(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be at least 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise BadInput(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise BadInput(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise BadInput(f"label_smoothing must be in 0..1 (exclusive), got {self.label_smoothing}")
        if not 0 <= self.dropout < 1:
            raise BadInput(f"dropout must be in 0..1 (exclusive), got {self.dropout}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise BadInput(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.hidden < 0:
            raise BadInput(f"hidden must be >= 0, got {self.hidden}")
        if self.patience < 1:
            raise BadInput(f"patience must be at least 1, got {self.patience}")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "adam" else 0.01)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["lr"] = self.learning_rate
        return d


@dataclass(frozen=True)
class Distill:
    """Teacher targets: `logits` [rows, classes] aligned with the training rows, at `temperature`, weight `alpha`
    on the hard-label term."""

    logits: np.ndarray
    temperature: float = 2.0
    alpha: float = 0.5

    def check(self) -> "Distill":
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise BadInput(f"temperature must be a positive number, got {self.temperature}")
        if not (math.isfinite(self.alpha) and 0 <= self.alpha <= 1):
            raise BadInput(f"alpha must be in 0..1, got {self.alpha}")
        return self

    def soft_targets(self) -> np.ndarray:
        z = np.asarray(self.logits, np.float64) / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        q = np.exp(z)
        return q / q.sum(axis=1, keepdims=True)


@dataclass
class Head:
    """Layers as (weight [out, in], bias [out]) pairs, applied in order with ReLU between them."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    def logits(self, x: np.ndarray) -> np.ndarray:
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return x


@dataclass
class EpochStats:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


@dataclass
class HeadResult:
    head: Head
    best_epoch: int
    history: list[EpochStats] = field(default_factory=list)

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _targets(y: np.ndarray, classes: int, smoothing: float) -> np.ndarray:
    t = np.full((len(y), classes), smoothing / classes, np.float64)
    t[np.arange(len(y)), y] += 1.0 - smoothing
    return t


def _targets_or_zero(y: np.ndarray, classes: int, smoothing: float) -> np.ndarray:
    """Smoothed one-hot rows; all zero for rows labelled -1 (no label)."""
    t = _targets(np.maximum(y, 0), classes, smoothing)
    t[y < 0] = 0.0
    return t


def loss_acc(head: Head, x: np.ndarray, y: np.ndarray, smoothing: float) -> tuple[float, float]:
    """Smoothed cross-entropy and accuracy over the labelled rows (label >= 0)."""
    keep = y >= 0
    x, y = x[keep], y[keep]
    z = head.logits(x.astype(np.float64))
    loss = float(-(_targets(y, z.shape[1], smoothing) * _log_softmax(z)).sum(axis=1).mean())
    return loss, float((z.argmax(axis=1) == y).mean())


def _init(rng: np.random.Generator, features: int, classes: int, hidden: int) -> Head:
    sizes = [features, *([hidden] if hidden else []), classes]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, as Keras' Dense
        layers.append((rng.uniform(-bound, bound, (fan_out, fan_in)), np.zeros(fan_out)))
    return Head(layers)


def _better(a: EpochStats, b: EpochStats | None) -> bool:
    """Higher validation accuracy wins; a tie goes to the lower validation loss."""
    return b is None or a.val_acc > b.val_acc or (a.val_acc == b.val_acc and a.val_loss < b.val_loss)


def train_head(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, classes: int,
               settings: HeadSettings, on_progress: ProgressFn | None = None, distill: Distill | None = None,
               label: str = "train") -> HeadResult:
    """Train in float64 (deterministic for a seed); the returned head is the best validation epoch's.

    `distill`: teacher logits for every training row (rows labelled -1 then learn from the teacher alone);
    without it every row needs a label."""
    s = settings.check()
    y_train = np.asarray(y_train, np.int64)
    soft = None
    if distill is not None:
        distill = distill.check()
        if distill.logits.shape != (len(y_train), classes):
            raise ValueError(f"teacher logits {distill.logits.shape} do not match {len(y_train)} rows x {classes}")
        soft = distill.soft_targets()
    elif (y_train < 0).any():
        raise ValueError("rows without a label need teacher targets")
    rng = np.random.default_rng(s.seed)
    x_train = np.asarray(x_train, np.float64)
    head = _init(rng, x_train.shape[1], classes, s.hidden)
    params = [p for layer in head.layers for p in layer]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    n = len(x_train)
    steps_per_epoch = math.ceil(n / s.batch_size)
    total = s.epochs * steps_per_epoch
    step = 0
    history: list[EpochStats] = []
    best: EpochStats | None = None
    best_layers = [(w.copy(), b.copy()) for w, b in head.layers]
    since_best = 0
    targets = _targets_or_zero(y_train, classes, s.label_smoothing)
    hard = (y_train >= 0).astype(np.float64)
    for epoch in range(1, s.epochs + 1):
        order = rng.permutation(n)
        lr = s.learning_rate
        for start in range(0, n, s.batch_size):
            idx = order[start:start + s.batch_size]
            lr = s.learning_rate * 0.5 * (1 + math.cos(math.pi * step / total))
            if soft is None:
                grads = _gradients(head, x_train[idx], targets[idx], s.dropout, rng)
            else:
                grads = _gradients(head, x_train[idx], targets[idx], s.dropout, rng, hard=hard[idx],
                                   soft=soft[idx], temperature=distill.temperature, alpha=distill.alpha)
            step += 1
            for k, (p, g) in enumerate(zip(params, grads)):
                if k % 2 == 0:  # weights, not biases
                    g = g + s.weight_decay * p
                if s.optimizer == "adam":
                    m[k] = 0.9 * m[k] + 0.1 * g
                    v[k] = 0.999 * v[k] + 0.001 * g * g
                    mh = m[k] / (1 - 0.9**step)
                    vh = v[k] / (1 - 0.999**step)
                    p -= lr * mh / (np.sqrt(vh) + 1e-8)
                else:
                    m[k] = s.momentum * m[k] + g
                    p -= lr * m[k]
        tl, ta = loss_acc(head, x_train, y_train, s.label_smoothing)
        vl, va = loss_acc(head, x_val, y_val, s.label_smoothing)
        stats = EpochStats(epoch, lr, tl, ta, vl, va)
        history.append(stats)
        report(on_progress, epoch, s.epochs,
               f"{label} · epoch {epoch}: loss {tl:.3f}/{vl:.3f} acc {100 * ta:.1f}%/{100 * va:.1f}% (train/val)")
        if _better(stats, best):
            best, since_best = stats, 0
            best_layers = [(w.copy(), b.copy()) for w, b in head.layers]
        else:
            since_best += 1
            if since_best >= s.patience:
                break
    assert best is not None
    return HeadResult(Head(best_layers), best.epoch, history)


def _gradients(head: Head, x: np.ndarray, t: np.ndarray, dropout: float, rng: np.random.Generator, *,
               hard: np.ndarray | None = None, soft: np.ndarray | None = None, temperature: float = 1.0,
               alpha: float = 1.0) -> list[np.ndarray]:
    """Gradients of the mean loss for (w, b) of each layer; dropout on the head's input.

    Without `soft`: smoothed cross-entropy with targets `t`. With it: per row alpha * hard_i * CE(t_i, p) +
    (1 - alpha) * T^2 * KL(soft_i || p_T), whose gradient in the logits is alpha * hard_i * (p - t_i) +
    (1 - alpha) * T * (p_T - soft_i)."""
    if dropout > 0:
        keep = (rng.random(x.shape) >= dropout) / (1.0 - dropout)
        x = x * keep
    acts = [x]
    h = x
    for i, (w, b) in enumerate(head.layers):
        h = h @ w.T + b
        if i < len(head.layers) - 1:
            h = np.maximum(h, 0)
            acts.append(h)
    z = h - h.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if soft is None:
        delta = (p - t) / len(x)
    else:
        pt = np.exp(z / temperature)
        pt /= pt.sum(axis=1, keepdims=True)
        delta = (alpha * hard[:, None] * (p - t) + (1 - alpha) * temperature * (pt - soft)) / len(x)
    grads: list[np.ndarray] = []
    for i in range(len(head.layers) - 1, -1, -1):
        w, _ = head.layers[i]
        grads[:0] = [delta.T @ acts[i], delta.sum(axis=0)]
        if i > 0:
            delta = (delta @ w) * (acts[i] > 0)
    return grads
