"""Contrastive lifting (Eq. 3-4) and clustering on small synthetic problems whose answer is
known: a slab whose two halves are different masks in every view."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import trimesh

from hiscene_sim.lifting_eq3_4 import ClusterConfig, LiftConfig, cluster, cluster_temperature, contrastive_clustering_loss, lift
from hiscene_sim.parse import face_adjacency_matrix


def test_temperature_follows_eq4():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    prototypes, phi = cluster_temperature(f, labels, 2, alpha=10.0)
    spread0 = 2 * np.linalg.norm([0.5, -0.5])  # both points are sqrt(0.5) from their mean
    assert float(phi[0]) == pytest.approx(spread0 / (2 * np.log(2 + 10.0)))
    assert float(phi[1]) == 0.0  # a single point has no spread
    np.testing.assert_allclose(prototypes[0].numpy(), [0.5, 0.5])


def test_loss_is_lower_when_features_match_their_masks():
    labels = torch.tensor([0] * 10 + [1] * 10)
    good = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(10, 1), torch.tensor([[0.0, 1.0]]).repeat(10, 1)])
    good = good + 0.05 * torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    bad = good[torch.randperm(20, generator=torch.Generator().manual_seed(1))]
    norm = torch.nn.functional.normalize
    assert contrastive_clustering_loss(norm(good, dim=1), labels) < contrastive_clustering_loss(norm(bad, dim=1), labels)


def _two_halves(views: int = 6, pixels: int = 3000, seed: int = 0):
    mesh = trimesh.creation.box((2.0, 1.0, 0.1)).subdivide().subdivide().subdivide()
    truth = (mesh.triangles_center[:, 0] > 0).astype(int)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(views):
        face = rng.integers(0, len(mesh.faces), pixels)
        weights = sp.csr_matrix((np.ones(pixels), (np.arange(pixels), face)), shape=(pixels, len(mesh.faces)))
        out.append((weights, truth[face]))
    return mesh, truth, out


def test_lifting_then_clustering_recovers_the_two_halves():
    mesh, truth, views = _two_halves()
    lifted = lift(views, len(mesh.faces), LiftConfig(iterations=150, seed=0))
    assert lifted.losses[-1] < 0.1 * lifted.losses[0]
    labels = cluster(lifted.features, face_adjacency_matrix(mesh), mesh.area_faces, lifted.observed, ClusterConfig())
    assert len(np.unique(labels)) == 2
    agree = max(np.mean(labels == truth), np.mean(labels != truth))
    assert agree > 0.97


def test_lifting_is_deterministic_for_a_seed():
    mesh, _, views = _two_halves(views=2, pixels=500)
    a = lift(views, len(mesh.faces), LiftConfig(iterations=20, seed=3)).features
    b = lift(views, len(mesh.faces), LiftConfig(iterations=20, seed=3)).features
    np.testing.assert_array_equal(a, b)
