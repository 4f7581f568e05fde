"""Serving's fast paths give exactly what the general paths give.

A feed request scores one user's candidates, so serving takes shortcuts the general code
cannot: native-code ranker heads, per-user co-engagement, one sparse product per user for
item-item pair scores. Each is checked here against the path it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest

from homefeed.config import RankerConfig
from homefeed.models import features
from homefeed.models.features import FeatureContext
from homefeed.models.ranker import Ranker
from homefeed.models.sources.collaborative import ItemItemSource
from homefeed.testing.models import simulated_training_data

NAMES = tuple(f"f{i}" for i in range(5))


@pytest.fixture(scope="module")
def data():
    return simulated_training_data(users=150, pins=600)


def test_compiled_heads_score_exactly_like_lightgbm(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, len(NAMES))).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take LightGBM's default branch
    labels = {
        "click": (x[:, 1] + rng.normal(0, 0.5, len(x)) > 0.5).astype(np.int8),
        "save": (np.nan_to_num(x[:, 2]) > 1.0).astype(np.int8),
    }
    config = RankerConfig(rounds=40, min_data_in_leaf=20, num_leaves=15)
    ranker = Ranker(config, NAMES).fit(x, labels, rng.integers(0, 300, len(x)))
    want = ranker.score(x)
    assert set(ranker.compile(tmp_path)) == {"click", "save"}
    np.testing.assert_allclose(ranker.score(x), want, rtol=1e-12, atol=1e-12)
    assert len(list(tmp_path.glob("*.so"))) == 2  # cached: a restart loads, not compiles
    again = Ranker(config, NAMES).fit(x, labels, rng.integers(0, 300, len(x)))
    assert set(again.compile(tmp_path)) == {"click", "save"}


def test_compiled_ranker_refuses_a_wrong_feature_count(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, len(NAMES))).astype(np.float32)
    click = (x[:, 0] > 0.5).astype(np.int8)
    ranker = Ranker(RankerConfig(rounds=10), NAMES).fit(x, {"click": click}, np.arange(len(x)))
    ranker.compile(tmp_path)
    with pytest.raises(ValueError, match="features"):
        ranker.score(x[:, :3])


def test_per_user_coengagement_equals_the_general_path(data, monkeypatch):
    ctx = FeatureContext.build(data)
    rng = np.random.default_rng(5)
    active = ctx.user_recent_pins[:, 0] >= 0
    some = rng.choice(np.flatnonzero(active), 4, replace=False)
    u = np.concatenate([np.repeat(some, 200), [-1] * 20])  # known users and an unknown one
    # Candidates: the users' recent pins' neighbours (hits), random pins, unknown pins.
    p = rng.integers(-1, len(ctx.pins), len(u))
    neighbours = ctx.neighbour_indices[: len(u) // 2]
    p[: len(neighbours)] = neighbours
    fast = features._coengagement(ctx, u, p)
    monkeypatch.setattr(features, "FEW_USERS", -1)
    general = features._coengagement(ctx, u, p)
    assert np.count_nonzero(general) > 0
    np.testing.assert_allclose(fast, general, rtol=1e-6)


def test_sparse_item_item_pair_scores_equal_the_user_rows(data):
    source = ItemItemSource(dense_max_items=0, neighbours=50)
    source.fit(data)
    users = np.unique(data.positives().user_id)[:20]
    got = source.retrieve(users, 30)
    rows, cols = np.nonzero(got.pins >= 0)
    pairs = source.score(users[rows], got.pins[rows, cols])
    np.testing.assert_allclose(pairs, got.scores[rows, cols], rtol=1e-5)
    unknown = source.score(np.array([-7, users[0]]), np.array([got.pins[0, 0], -3]))
    assert unknown.tolist() == [0.0, 0.0]
