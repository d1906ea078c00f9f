"""Triplet loss, online negative miners and a small adaptation head, in plain numpy.

FaceNet (Schroff et al., 2015) trains f so that ‖f(a) - f(p)‖² + alpha ≤ ‖f(a) - f(n)‖² for an anchor
a, a positive p (same person) and a negative n (someone else), with f on the unit sphere. Here f
is a small head on top of a frozen encoder's embeddings (``models/train_triplet.py``):

    z = x A + relu(x W1 + b1) W2,    f(x) = z / ‖z‖

A (input_dim x out_dim) is the linear part; the hidden layer (W1, b1, W2) is an optional
residual correction (``hidden = 0``: linear only). W2 starts at zero, so training starts from
the linear map, and ``A`` is initialised to keep the encoder's own geometry (identity or PCA).

Mining happens inside each batch of P people x K photos, on the current embeddings, for every
anchor-positive pair (a, p):

- ``hard``: the nearest negative, whatever its distance;
- ``semihard``: the nearest negative that is still farther than p (FaceNet's semi-hard choice,
  as TensorFlow Addons' ``triplet_semihard_loss`` does it); when no negative is farther than p,
  the farthest negative (the easiest, which avoids collapsing on label noise early on).

The loss is the mean over those triplets of max(0, d(a, p) - d(a, n) + alpha), d = squared
Euclidean distance, so it is 0 exactly when every mined triplet keeps the margin. Gradients are
written out by hand (checked against finite differences in tests/test_triplet.py); Adam updates
the weights. Everything is seeded, float64, single-threaded numpy: the same data and seed give
the same head.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Mining = Literal["hard", "semihard"]
MINING_KINDS: tuple[Mining, ...] = ("hard", "semihard")
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_EPS = 1e-12


def squared_distances(e: F64) -> F64:
    """All pairwise squared Euclidean distances of the rows of ``e`` (clipped at 0)."""
    sq = (e * e).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (e @ e.T)
    out: F64 = np.maximum(d, 0.0)
    return out


def anchor_positive_pairs(labels: I64) -> tuple[I64, I64]:
    """Every ordered (anchor, positive) pair of two different rows with the same label."""
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    a, p = np.nonzero(same)
    return a.astype(np.int64), p.astype(np.int64)


@dataclass(frozen=True)
class Triplets:
    anchor: I64
    positive: I64
    negative: I64
    # How many mined negatives were semi-hard (farther than p, within the margin): a health sign.
    semihard: int = 0


def mine(d: F64, labels: I64, kind: Mining, margin: float) -> Triplets:
    """One negative per anchor-positive pair, chosen on the distance matrix ``d`` (see module doc).

    Pairs whose anchor has no negative in the batch are dropped."""
    if kind not in MINING_KINDS:
        raise ValueError(f"mining must be one of {MINING_KINDS}, got {kind!r}")
    a, p = anchor_positive_pairs(labels)
    negative_mask = labels[:, None] != labels[None, :]
    has_negative = negative_mask[a].any(axis=1)
    a, p = a[has_negative], p[has_negative]
    if len(a) == 0:
        empty = np.empty(0, dtype=np.int64)
        return Triplets(empty, empty, empty)
    d_an = np.where(negative_mask[a], d[a], np.inf)  # (pairs, n): distances to negatives only
    d_ap = d[a, p][:, None]
    if kind == "hard":
        n = np.argmin(d_an, axis=1)
    else:
        farther = np.where(d_an > d_ap, d_an, np.inf)
        nearest_farther = np.argmin(farther, axis=1)
        none_farther = ~np.isfinite(farther.min(axis=1))
        easiest = np.argmax(np.where(negative_mask[a], d[a], -np.inf), axis=1)
        n = np.where(none_farther, easiest, nearest_farther)
    chosen = d[a, n]
    semihard = int(((chosen > d_ap[:, 0]) & (chosen < d_ap[:, 0] + margin)).sum())
    return Triplets(a, p, n.astype(np.int64), semihard)


def triplet_loss(e: F64, t: Triplets, margin: float) -> tuple[float, F64, float]:
    """Mean hinge over the triplets, its gradient with respect to ``e``, and the share of
    triplets that violate the margin (loss > 0)."""
    grad = np.zeros_like(e)
    if len(t.anchor) == 0:
        return 0.0, grad, 0.0
    ea, ep, en = e[t.anchor], e[t.positive], e[t.negative]
    d_ap = ((ea - ep) ** 2).sum(axis=1)
    d_an = ((ea - en) ** 2).sum(axis=1)
    hinge = d_ap - d_an + margin
    active = hinge > 0
    m = len(t.anchor)
    loss = float(np.where(active, hinge, 0.0).sum() / m)
    w = active[:, None] / m
    np.add.at(grad, t.anchor, w * 2.0 * (en - ep))
    np.add.at(grad, t.positive, w * -2.0 * (ea - ep))
    np.add.at(grad, t.negative, w * 2.0 * (ea - en))
    return loss, grad, float(active.mean())


def batch_loss(e: F64, labels: I64, kind: Mining, margin: float) -> float:
    """The mined triplet loss of one batch of embeddings (no gradient)."""
    return triplet_loss(e, mine(squared_distances(e), labels, kind, margin), margin)[0]


@dataclass
class Head:
    """z = x A + relu(x W1 + b1) W2, f = z / ‖z‖ (see module doc). float64 weights."""

    a: F64  # (in, out)
    w1: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # (in, hidden)
    b1: F64 = field(default_factory=lambda: np.zeros(0))  # (hidden,)
    w2: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # (hidden, out)

    @property
    def input_dim(self) -> int:
        return int(self.a.shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.a.shape[1])

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[1]) if self.w1.size else 0

    def params(self) -> dict[str, F64]:
        out = {"a": self.a}
        if self.hidden:
            out.update(w1=self.w1, b1=self.b1, w2=self.w2)
        return out

    def copy(self) -> Head:
        return Head(self.a.copy(), self.w1.copy(), self.b1.copy(), self.w2.copy())

    def forward(self, x: NDArray[np.floating]) -> tuple[F64, dict[str, F64]]:
        """Unit embeddings and what backward needs."""
        x64 = np.asarray(x, dtype=np.float64)
        z = x64 @ self.a
        cache: dict[str, F64] = {"x": x64}
        if self.hidden:
            h = x64 @ self.w1 + self.b1
            r = np.maximum(h, 0.0)
            z = z + r @ self.w2
            cache.update(h=h, r=r)
        norm = np.maximum(np.linalg.norm(z, axis=1, keepdims=True), _EPS)
        e = z / norm
        cache.update(e=e, norm=norm)
        return e, cache

    def __call__(self, x: NDArray[np.floating]) -> F64:
        return self.forward(x)[0]

    def backward(self, grad_e: F64, cache: dict[str, F64]) -> dict[str, F64]:
        """Gradients of the loss with respect to every parameter, given dL/de."""
        e, norm, x = cache["e"], cache["norm"], cache["x"]
        grad_z = (grad_e - e * (grad_e * e).sum(axis=1, keepdims=True)) / norm
        grads = {"a": x.T @ grad_z}
        if self.hidden:
            grads["w2"] = cache["r"].T @ grad_z
            grad_h = (grad_z @ self.w2.T) * (cache["h"] > 0)
            grads["w1"] = x.T @ grad_h
            grads["b1"] = grad_h.sum(axis=0)
        return grads


def init_head(x: NDArray[np.floating], out_dim: int, hidden: int, seed: int) -> Head:
    """A head that starts from the encoder's own geometry: the identity when the input already
    has ``out_dim`` dimensions, else the top ``out_dim`` principal directions of ``x`` (about the
    origin, so distances between unit inputs are kept as well as a projection can). The hidden
    layer starts random (He) with W2 = 0, i.e. contributing nothing yet."""
    x64 = np.asarray(x, dtype=np.float64)
    dim = x64.shape[1]
    if out_dim > dim:
        raise ValueError(f"output dimension {out_dim} exceeds the input's {dim}")
    if out_dim == dim:
        a = np.eye(dim)
    else:
        _, _, vt = np.linalg.svd(x64, full_matrices=False)
        a = vt[:out_dim].T.copy()
        # A deterministic sign per component (SVD's is arbitrary across platforms).
        a *= np.where(a[np.abs(a).argmax(axis=0), np.arange(out_dim)] < 0, -1.0, 1.0)
    if hidden <= 0:
        return Head(a)
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((dim, hidden)) * np.sqrt(2.0 / dim)
    return Head(a, w1, np.zeros(hidden), np.zeros((hidden, out_dim)))


@dataclass
class Adam:
    """Adam with decoupled weight decay towards the starting weights (the pretrained geometry)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    decay: float = 0.0
    step_count: int = 0
    m: dict[str, F64] = field(default_factory=dict)
    v: dict[str, F64] = field(default_factory=dict)
    anchor: dict[str, F64] = field(default_factory=dict)

    def step(self, head: Head, grads: dict[str, F64]) -> None:
        self.step_count += 1
        t = self.step_count
        for name, g in grads.items():
            w = getattr(head, name)
            if name not in self.m:
                self.m[name] = np.zeros_like(w)
                self.v[name] = np.zeros_like(w)
                self.anchor[name] = w.copy()
            self.m[name] = self.beta1 * self.m[name] + (1 - self.beta1) * g
            self.v[name] = self.beta2 * self.v[name] + (1 - self.beta2) * g * g
            m_hat = self.m[name] / (1 - self.beta1**t)
            v_hat = self.v[name] / (1 - self.beta2**t)
            update = m_hat / (np.sqrt(v_hat) + self.eps) + self.decay * (w - self.anchor[name])
            setattr(head, name, w - self.lr * update)


def pk_batches(labels: I64, people: int, photos: int, rng: np.random.Generator) -> Iterator[I64]:
    """One epoch of batches of P people x up to K photos each (row indices into ``labels``).

    Only people with at least two photos can give a positive; each such person leads a batch
    once per epoch, the people are shuffled, and each person's photos are sampled without
    replacement (all of them when they have K or fewer)."""
    by_person: dict[int, I64] = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) >= 2:
            by_person[int(label)] = rows
    order = rng.permutation(np.array(sorted(by_person), dtype=np.int64))
    for start in range(0, len(order) - people + 1, people):
        chosen = order[start : start + people]
        parts = []
        for person in chosen:
            rows = by_person[int(person)]
            take = min(photos, len(rows))
            parts.append(rng.choice(rows, size=take, replace=False))
        yield np.concatenate(parts).astype(np.int64)
