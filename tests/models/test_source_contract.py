"""The CandidateSource contract, run on every registered source (see sources/base.py)."""

from __future__ import annotations

import numpy as np
import pytest

from homefeed.models.data import TrainingData
from homefeed.models.sources import SOURCES, CandidateSource, make_source
from homefeed.models.sources.base import NO_PIN
from homefeed.testing.models import simulated_training_data

K = 20


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return simulated_training_data()


@pytest.fixture(scope="module", params=sorted(SOURCES))
def fitted(request, data) -> CandidateSource:
    source = make_source(request.param)
    source.fit(data)
    return source


def _active_users(data: TrainingData, n: int = 40) -> np.ndarray:
    users, counts = np.unique(data.positives().user_id, return_counts=True)
    return users[np.argsort(-counts, kind="stable")[:n]]


def test_candidates_are_ranked_unique_and_bounded(fitted, data):
    users = _active_users(data)
    got = fitted.retrieve(users, K)
    assert got.pins.shape == (len(users), K) and got.scores.shape == (len(users), K)
    assert np.array_equal(got.user_ids, users)
    known = set(data.pins.pin_id.tolist())
    served = 0
    for row in range(len(users)):
        pins, scores = got.of(row)
        served += len(pins)
        assert len(set(pins.tolist())) == len(pins), "a pin twice for one user"
        assert np.all(np.diff(scores) <= 1e-6), "scores must not increase"
        assert np.all(np.isfinite(scores))
        assert set(pins.tolist()) <= known, "candidates must be catalogue pins"
        # padding only at the end
        assert np.all(got.pins[row, len(pins) :] == NO_PIN)
    assert served > 0, f"{fitted.name} retrieved nothing for the most active users"


def test_excluded_pins_never_come_back(fitted, data):
    users = _active_users(data, 10)
    first = fitted.retrieve(users, K)
    exclude = {int(u): first.of(i)[0][:5] for i, u in enumerate(users)}
    again = fitted.retrieve(users, K, exclude=exclude)
    for i, u in enumerate(users):
        assert not set(again.of(i)[0].tolist()) & set(exclude[int(u)].tolist())


def test_unknown_users_get_an_answer_not_an_error(fitted):
    got = fitted.retrieve(np.array([-12345, 10**15], dtype=np.int64), K)
    assert got.pins.shape == (2, K)


def test_fit_is_deterministic_and_save_load_round_trips(fitted, data, tmp_path):
    users = _active_users(data, 15)
    twin = make_source(fitted.name, **fitted.params())
    twin.fit(data)
    a, b = fitted.retrieve(users, K), twin.retrieve(users, K)
    assert np.array_equal(a.pins, b.pins)
    fitted.save(tmp_path / "src")
    assert not list((tmp_path / "src").rglob("*.pkl")), "no pickles in a bundle"
    loaded = CandidateSource.load(tmp_path / "src")
    c = loaded.retrieve(users, K)
    assert np.array_equal(a.pins, c.pins)
    np.testing.assert_allclose(a.scores, c.scores, rtol=1e-5)


def test_unknown_parameters_are_refused(fitted):
    with pytest.raises(TypeError):
        make_source(fitted.name, no_such_parameter=1)
