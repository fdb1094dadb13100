"""Consensus of several parses (hiscene_sim.consensus): the objects a majority of runs agree on."""

from __future__ import annotations

import numpy as np
import pytest

from hiscene_sim.consensus import consensus_objects
from hiscene_sim.lifting_eq3_4 import prototype_labels


def _strip(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n primitives in a row, each touching the next; unit areas."""
    return np.ones(n), np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)


def _runs(*specs: list[tuple[int, int, int]], n: int = 100) -> list[np.ndarray]:
    """Each run from (start, stop, label) spans; the rest is background (-1)."""
    runs = []
    for spans in specs:
        r = np.full(n, -1)
        for a, b, k in spans:
            r[a:b] = k
        runs.append(r)
    return runs


def test_an_object_one_run_merged_into_its_support_is_kept():
    # floor 0-20, table 20-80, mug 80-95 (touching the table), floor 95-100
    areas, pairs = _strip(100)
    runs = _runs([(20, 80, 0), (80, 95, 1)],
                 [(20, 95, 0)],  # this run lost the mug into the table
                 [(20, 82, 0), (82, 95, 1)])  # this one's contact is 2 primitives off
    out = consensus_objects(runs, areas, pairs)
    assert out.accepted == 2
    assert len(np.unique(out.labels[20:80])) == 1 and len(np.unique(out.labels[83:95])) == 1
    assert out.labels[50] != out.labels[90]
    assert (out.labels[:20] == -1).all() and (out.labels[95:] == -1).all()
    assert set(out.labels[80:83].tolist()) <= {out.labels[50], out.labels[90]}  # the disputed ring joins one of them


def test_an_object_one_run_split_stays_whole():
    areas, pairs = _strip(100)
    runs = _runs([(20, 80, 0), (80, 95, 1)],
                 [(20, 70, 0), (70, 80, 2), (80, 95, 1)],  # a piece of the table as an object of its own
                 [(20, 80, 0), (80, 95, 1)])
    out = consensus_objects(runs, areas, pairs)
    assert out.accepted == 2
    assert len(np.unique(out.labels[20:80])) == 1
    assert any("no majority" in reason for reason in out.rejected)


def test_background_is_what_most_runs_call_background():
    areas, pairs = _strip(100)
    runs = _runs([(20, 80, 0)], [(10, 80, 0)], [(20, 90, 0)])
    out = consensus_objects(runs, areas, pairs)
    assert (out.labels[:20] == -1).all() and (out.labels[80:] == -1).all()
    assert (out.labels[20:80] == 0).all()


def test_one_run_is_returned_as_it_is():
    areas, pairs = _strip(50)
    run = _runs([(5, 30, 0), (30, 45, 1)], n=50)[0]
    out = consensus_objects([run], areas, pairs)
    np.testing.assert_array_equal(out.labels, run)
    assert out.accepted == 2


def test_prototype_clustering_stops_on_a_tail_of_lone_features():
    # two tight directions of 400 primitives each, then 300 primitives of noise, each its own direction
    rng = np.random.default_rng(0)
    a = np.tile([1.0, 0.0, 0.0, 0.0], (400, 1)) + rng.normal(0, 0.01, (400, 4))
    b = np.tile([0.0, 1.0, 0.0, 0.0], (400, 1)) + rng.normal(0, 0.01, (400, 4))
    noise = rng.normal(0, 1, (300, 4))
    features = np.concatenate([a, b, noise])
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    areas, observed = np.ones(len(features)), np.ones(len(features), dtype=bool)
    full = prototype_labels(features, areas, observed, 0.99, seed=0)
    cut = prototype_labels(features, areas, observed, 0.99, seed=0, min_members=30, patience=10)
    assert len(np.unique(full[800:])) > 50  # without patience: a cluster per lone feature
    np.testing.assert_array_equal(cut[:800], full[:800])  # the two real clusters are the same
    assert len(np.unique(cut[:800])) == 2
    assert (cut[800:] == -1).sum() > 200  # the tail is left for the clean-up to absorb


def test_runs_option_reaches_the_parse_config(capsys):
    import argparse

    from hiscene_sim.options import add_parse_options, parse_config_from_args

    parser = argparse.ArgumentParser()
    add_parse_options(parser)
    assert parse_config_from_args(parser.parse_args([])).runs == 3
    assert parse_config_from_args(parser.parse_args(["--runs", "1"])).runs == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--runs", "0"])
    assert "--runs: expected a whole number >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("option, field", [("--crease", "crease"), ("--islands", "island_color")])
def test_grouping_options_reach_the_grouping_config(capsys, option, field):
    import argparse

    from hiscene_sim.object_grouping import GroupingConfig
    from hiscene_sim.options import add_parse_options, parse_config_from_args

    parser = argparse.ArgumentParser()
    add_parse_options(parser)
    default = getattr(GroupingConfig(), field)
    assert getattr(parse_config_from_args(parser.parse_args([])).grouping, field) == default > 0
    assert getattr(parse_config_from_args(parser.parse_args([option, "0"])).grouping, field) == 0
    for bad in ("-0.1", "nan", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args([option, bad])
        assert f"{option}: expected a number >= 0, got '{bad}'" in capsys.readouterr().err
