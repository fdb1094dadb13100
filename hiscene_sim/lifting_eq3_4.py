"""3D contrastive lifting of 2D instance masks (paper A.2, after OmniSeg3D-GS), then
clustering of the lifted features into objects.

Every primitive (a mesh face or a 3D Gaussian) gets a 16-d feature h_g. A view's rendered
feature at a pixel is the renderer's blend of its primitives' features, f = sum_g w_g h_g.
Geometry does not change while lifting, so each view's pixel-to-primitive weights are
computed once (``RenderResult.weights``, a sparse matrix) and a training step is a sparse
product ``W[pixels] @ H`` instead of a re-render.

Loss, Eq. 3 (contrastive clustering, prototypes = mean feature of each 2D mask):

    L = -1/N_p sum_i sum_j log( exp(f_j^i . fbar^i / phi_i) / sum_k exp(f_j^i . fbar^k / phi_k) )

with the per-cluster temperature of Eq. 4 (alpha = 10), detached as in OmniSeg3D-GS:

    phi_i = sum_j ||f_j^i - fbar^i||_2 / (n_i log(n_i + alpha))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiftConfig:
    feature_dim: int = 16
    alpha: float = 10.0  # Eq. 4 smoothing
    iterations: int = 600
    pixels_per_step: int = 4096
    learning_rate: float = 0.05
    min_temperature: float = 0.05  # floor for phi (a cluster of identical features would divide by ~0)
    max_primitives_per_pixel: int = 8  # the strongest Gaussians per pixel kept in the precomputed weights
    seed: int = 0


@dataclass
class LiftedFeatures:
    features: np.ndarray  # (n_primitives, D), unit length
    observed: np.ndarray  # (n_primitives,) bool: covered by some view with a mask
    losses: list[float]
    seconds_per_iteration: float


def cluster_temperature(features: torch.Tensor, labels: torch.Tensor, n_clusters: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(prototypes (K, D), phi (K,)) of Eq. 3-4 for features (N, D) with cluster ids in [0, K)."""
    counts = torch.bincount(labels, minlength=n_clusters).clamp(min=1).to(features.dtype)
    sums = torch.zeros(n_clusters, features.shape[1], dtype=features.dtype).index_add_(0, labels, features)
    prototypes = sums / counts[:, None]
    spread = torch.zeros(n_clusters, dtype=features.dtype).index_add_(
        0, labels, torch.linalg.norm(features - prototypes[labels], dim=1)
    )
    phi = spread / (counts * torch.log(counts + alpha))
    return prototypes, phi


def contrastive_clustering_loss(features: torch.Tensor, labels: torch.Tensor, alpha: float = 10.0, min_temperature: float = 0.05) -> torch.Tensor:
    """Eq. 3 with Eq. 4's temperature for rendered features (N, D) and their mask ids (N,)."""
    unique, labels = torch.unique(labels, return_inverse=True)
    n_clusters = len(unique)
    prototypes, phi = cluster_temperature(features, labels, n_clusters, alpha)
    phi = phi.detach().clamp(min=min_temperature)
    logits = (features @ prototypes.T) / phi[None, :]  # (N, K): f_j . fbar^k / phi_k
    log_prob = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -log_prob.sum() / n_clusters


def _ell(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a sparse pixel->primitive matrix as (indices (P, k), weights (P, k)), keeping
    each row's k largest weights (padding: index 0, weight 0). A gather over a fixed width
    is much faster on CPU than torch.sparse for the few primitives a pixel sees."""
    matrix = matrix.tocsr()
    counts = np.diff(matrix.indptr)
    k = max(1, min(k, int(counts.max()) if len(counts) else 1))
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((-matrix.data, rows))  # by row, strongest weight first
    rank = np.arange(len(order)) - matrix.indptr[rows[order]]
    keep = order[rank < k]
    idx = np.zeros((matrix.shape[0], k), dtype=np.int64)
    wts = np.zeros((matrix.shape[0], k), dtype=np.float32)
    slot = (np.arange(len(order)) - matrix.indptr[rows[order]])[rank < k]
    idx[rows[keep], slot] = matrix.indices[keep]
    wts[rows[keep], slot] = matrix.data[keep]
    return idx, wts


def lift(views: list[tuple[sp.csr_matrix, np.ndarray]], n_primitives: int, config: LiftConfig | None = None, progress=None) -> LiftedFeatures:
    """Learn per-primitive features from views given as (weights (P, n_primitives) CSR,
    mask ids (P,) with -1 = no mask). Mask ids are per view; they are made global here."""
    config = config or LiftConfig()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    usable = []
    observed = np.zeros(n_primitives, dtype=bool)
    offset = 0
    for weights, masks in views:
        rows = np.flatnonzero(masks >= 0)
        if len(rows) == 0:
            continue
        w = weights[rows].tocsr()
        observed[np.unique(w.indices)] = True
        idx, wts = _ell(w, config.max_primitives_per_pixel)
        ids = masks[rows].astype(np.int64)
        # every mask gets the same share of a step's samples, so a mug seen in 50 pixels
        # trains as much as the floor seen in 50,000 (uniform sampling almost never picks it)
        balance = 1.0 / np.bincount(ids)[ids]
        usable.append((torch.from_numpy(idx), torch.from_numpy(wts), torch.from_numpy(ids + offset), balance / balance.sum()))
        offset += int(masks.max()) + 1
    if not usable:
        raise ValueError("no view has any 2D mask to lift")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps are small: one thread beats two that contend (25x here)
    try:
        return _train(usable, n_primitives, observed, config, rng, progress)
    finally:
        torch.set_num_threads(threads)


def _train(usable, n_primitives: int, observed: np.ndarray, config: LiftConfig, rng, progress) -> LiftedFeatures:
    raw = torch.nn.Parameter(torch.randn(n_primitives, config.feature_dim) * 0.1)
    optimizer = torch.optim.Adam([raw], lr=config.learning_rate)
    losses: list[float] = []
    t0 = time.perf_counter()
    for it in range(config.iterations):
        idx, wts, masks, balance = usable[int(rng.integers(len(usable)))]
        take = torch.from_numpy(rng.choice(len(masks), size=config.pixels_per_step, replace=True, p=balance))
        h = torch.nn.functional.normalize(raw[idx[take]], dim=2)  # only the primitives these pixels see
        f = (wts[take][:, :, None] * h).sum(dim=1)  # = W[take] @ normalize(H)
        f = torch.nn.functional.normalize(f, dim=1)
        loss = contrastive_clustering_loss(f, masks[take], config.alpha, config.min_temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(it + 1, config.iterations, losses[-1])
    per_iteration = (time.perf_counter() - t0) / max(config.iterations, 1)
    features = torch.nn.functional.normalize(raw.detach(), dim=1).numpy()
    log.info("lifted %d primitives over %d views: %d iterations, %.1f ms each, loss %.3f -> %.3f",
             n_primitives, len(usable), config.iterations, per_iteration * 1000, losses[0], losses[-1])
    return LiftedFeatures(features, observed, losses, per_iteration)


@dataclass(frozen=True)
class ClusterConfig:
    similarity: float = 0.7  # primitives within this cosine of a cluster's prototype belong to it
    smooth_iterations: int = 3  # feature averaging over neighbours before clustering (denoises rarely sampled primitives)
    seed: int = 0
    min_fraction: float = 0.0001  # clusters under this share of the total area are merged into a neighbour (a 3 cm brick in a 2 m scene is ~0.0003)
    min_primitives: int = 30  # ... and so are clusters of fewer primitives


def cluster(features: np.ndarray, adjacency: sp.spmatrix, areas: np.ndarray, observed: np.ndarray, config: ClusterConfig | None = None) -> np.ndarray:
    """Instance id per primitive, 0..K-1 largest area first.

    1. smooth features over the neighbour graph (mesh face adjacency, or k-nearest Gaussians);
    2. prototype clustering without chaining: repeatedly take the densest remaining feature
       direction and give it every remaining primitive within ``similarity`` (cosine) of the
       prototype, refining the prototype as their mean;
    3. split each cluster into its connected pieces on the neighbour graph;
    4. unobserved primitives and pieces under ``min_fraction`` of the area join the
       neighbouring cluster most of their edges lead to.
    """
    config = config or ClusterConfig()
    adjacency = sp.coo_matrix(adjacency)
    i = np.concatenate([adjacency.row, adjacency.col])  # both directions
    j = np.concatenate([adjacency.col, adjacency.row])
    n = len(features)
    features = smooth_features(features, observed, i, j, config.smooth_iterations)
    observed = np.linalg.norm(features, axis=1) > 0  # smoothing reaches some unobserved primitives
    labels = prototype_labels(features, areas, observed, config.similarity, config.seed, min_members=config.min_primitives)
    same = labels[i] == labels[j]
    graph = sp.coo_matrix((np.ones(int(same.sum())), (i[same], j[same])), shape=(n, n))
    _, pieces = sp.csgraph.connected_components(graph, directed=False)
    pieces = np.where(labels >= 0, pieces, -1)
    pieces = _absorb(pieces, i, j, areas, config.min_fraction, config.min_primitives)
    return relabel_by_area(pieces, areas)


def prototype_labels(features: np.ndarray, areas: np.ndarray, observed: np.ndarray, similarity: float, seed: int = 0, sample: int = 2000,
                     min_members: int = 0, patience: int = 25) -> np.ndarray:
    """Greedy prototype clustering of unit features (no single-linkage chaining): -1 for
    unobserved primitives.

    Each round takes the densest direction among a random probe of ``sample`` remaining
    primitives (the area within ``similarity`` of it), refines it as the mean of its members
    and gives it every remaining primitive within ``similarity``. The probe's pairwise
    similarities are computed once per draw and its densities updated as members leave (a
    fresh probe is drawn when three quarters of it is taken), in float32: a round costs a few
    matrix-vector products over the remaining primitives, not a new 2000 x 2000 product.

    Densest directions come first, so the tail is noise: primitives whose feature matches no
    one else's, each a cluster of a handful of members, one round each (1400 of 1650 clusters on
    a 140k-face tabletop). Once ``patience`` clusters in a row have fewer than ``min_members``
    members, the rest stay unlabelled (-1): the clean-up gives such small clusters and
    unlabelled primitives alike to the neighbouring cluster."""
    rng = np.random.default_rng(seed)
    unit = np.ascontiguousarray(features, dtype=np.float32)
    labels = np.full(len(features), -1, dtype=np.int64)
    remaining = np.flatnonzero(observed)
    candidates = unit[remaining]  # the remaining primitives' features, compacted as they are taken
    probe = np.empty(0, dtype=np.int64)
    near, weight, density = np.zeros((0, 0), dtype=bool), np.zeros(0), np.zeros(0)
    k = small_in_a_row = 0
    while len(remaining) and (min_members <= 0 or small_in_a_row < patience):
        alive = labels[probe] < 0
        if alive.sum() < max(1, min(sample, len(remaining)) // 4):  # (re)draw the probe from what is left
            probe = remaining if len(remaining) <= sample else np.sort(rng.choice(remaining, sample, replace=False))
            near = (unit[probe] @ unit[probe].T) >= similarity
            weight = areas[probe].astype(np.float64)
            density = near @ weight
            alive = np.ones(len(probe), dtype=bool)
        densest = int(np.argmax(np.where(alive, density, -np.inf)))
        prototype = unit[probe[densest]]
        for _ in range(3):  # refine: mean of the members, then reassign
            inside = candidates @ prototype >= similarity
            if not inside.any():
                break
            mean = (candidates[inside] * areas[remaining[inside], None]).sum(axis=0)
            prototype = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        inside = candidates @ prototype >= similarity
        if not inside.any():  # a lone direction: it is its own cluster
            inside = remaining == probe[densest]
        labels[remaining[inside]] = k
        k += 1
        small_in_a_row = small_in_a_row + 1 if inside.sum() < min_members else 0
        remaining, candidates = remaining[~inside], candidates[~inside]
        taken = alive & (labels[probe] >= 0)  # their area leaves every probe density
        if taken.any():
            density = density - near[:, taken] @ weight[taken]
    return labels


def smooth_features(features: np.ndarray, observed: np.ndarray, i: np.ndarray, j: np.ndarray, iterations: int) -> np.ndarray:
    """Average each primitive's feature with its neighbours' (unobserved ones count as 0),
    renormalising each round. A face that few pixels ever sampled gets a noisy feature; its
    neighbours agree within an object and disagree across, so this sharpens clusters."""
    n = len(features)
    walk = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr() + sp.identity(n, format="csr")
    current = np.where(observed[:, None], features, 0.0)
    for _ in range(iterations):
        current = walk @ current
        norm = np.linalg.norm(current, axis=1, keepdims=True)
        current = np.where(norm > 1e-12, current / np.maximum(norm, 1e-12), 0.0)
    return current


def _absorb(labels: np.ndarray, i: np.ndarray, j: np.ndarray, areas: np.ndarray, min_fraction: float, min_primitives: int = 0) -> np.ndarray:
    """Unlabelled (-1) primitives and clusters under ``min_fraction`` of the area join the
    neighbouring big cluster most of their edges lead to, one ring of primitives per round.
    Small pieces with no big neighbour anywhere keep their own cluster."""
    labels = labels.copy()
    n, total = len(labels), float(areas.sum())
    for _ in range(10_000):
        valid = labels >= 0
        n_labels = int(labels.max()) + 1 if valid.any() else 0
        sizes = np.bincount(labels[valid], weights=areas[valid], minlength=n_labels)
        small = ~valid
        counts = np.bincount(labels[valid], minlength=n_labels)
        small[valid] = (sizes[labels[valid]] < min_fraction * total) | (counts[labels[valid]] < min_primitives)
        edge = small[i] & ~small[j]
        if not edge.any():
            break
        votes = sp.coo_matrix((np.ones(int(edge.sum())), (i[edge], labels[j[edge]])), shape=(n, n_labels)).tocsr()
        rows = np.unique(i[edge])
        labels[rows] = np.asarray(votes[rows].argmax(axis=1)).ravel()
    if np.any(labels < 0):  # a piece no observed primitive reaches
        labels[labels < 0] = labels.max() + 1
    return labels


def absorb_unlabelled(labels: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Unlabelled (-1) primitives join the neighbouring label most of their edges lead to, one
    ring per round (``pairs``: (E, 2) neighbouring primitives)."""
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return _absorb(labels, i, j, np.ones(len(labels)), 0.0, 0)


def relabel_by_area(labels: np.ndarray, areas: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, weights=areas)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse]
