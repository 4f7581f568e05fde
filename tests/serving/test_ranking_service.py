"""The Thrift ranking service on a real loopback server (a thread), and the in-process client."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from thriftpy2.rpc import make_client

from homefeed.serving.ranking import ranker_thrift
from homefeed.serving.ranking.client import (
    InProcessRankerClient,
    Scores,
    ThriftRankerClient,
    open_ranker_client,
)
from homefeed.serving.ranking.service import RankerError, RankingServer, RankingService
from homefeed.serving.settings import RankerServiceConfig

N_FEATURES = 40
NAMES = [f"f{i:02d}" for i in range(N_FEATURES)]


class TanhScorer:
    """A small nonlinear ranker: tanh(X @ w) + bias, its version naming the seed."""

    def __init__(self, seed: int, names: Sequence[str] = NAMES) -> None:
        rng = np.random.default_rng(seed)
        self.feature_names = list(names)
        self.version = f"tanh-{seed}"
        self.w = rng.normal(size=len(names))
        self.bias = float(seed)

    def score(self, feature_names: Sequence[str], X: np.ndarray) -> np.ndarray:
        assert list(feature_names) == self.feature_names
        return np.tanh(X.astype(np.float64) @ self.w) + self.bias


class GatedScorer(TanhScorer):
    """Blocks inside ``score`` until released: a request in flight during a swap."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.entered = threading.Event()
        self.release = threading.Event()

    def score(self, feature_names: Sequence[str], X: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(30)
        return super().score(feature_names, X)


@pytest.fixture
def service() -> RankingService:
    return RankingService(TanhScorer(1))


@pytest.fixture
def server(service: RankingService) -> Iterator[RankingServer]:
    with RankingServer(service, "127.0.0.1", port=0) as s:
        yield s


@pytest.fixture
def client(server: RankingServer) -> Iterator[ThriftRankerClient]:
    c = ThriftRankerClient("127.0.0.1", server.port, timeout_ms=10_000, pool_size=4)
    yield c
    c.close()


def _matrix(rows: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, N_FEATURES)).astype(np.float32)


def test_scores_over_thrift_equal_the_in_process_scorer(
    client: ThriftRankerClient, service: RankingService
) -> None:
    X = _matrix()
    remote = client.score(7, NAMES, X, pin_ids=list(range(500)))
    local = InProcessRankerClient(service).score(7, NAMES, X)
    expected = TanhScorer(1).score(NAMES, X)
    assert remote.model_version == local.model_version == "tanh-1"
    np.testing.assert_array_equal(remote.scores, expected)
    np.testing.assert_array_equal(local.scores, expected)


def test_reordered_feature_names_are_aligned(client: ThriftRankerClient) -> None:
    X = _matrix(50)
    order = np.random.default_rng(3).permutation(N_FEATURES)
    shuffled = client.score(1, [NAMES[i] for i in order], X[:, order])
    # allclose: BLAS may sum in another order for a differently aligned copy of X.
    np.testing.assert_allclose(shuffled.scores, TanhScorer(1).score(NAMES, X), rtol=1e-12)


@pytest.mark.parametrize("remote", [True, False])
def test_feature_mismatch_names_missing_and_extra(
    remote: bool, client: ThriftRankerClient, service: RankingService
) -> None:
    names = [*NAMES[:-2], "f98", "f99"]
    caller = client if remote else InProcessRankerClient(service)
    with pytest.raises(RankerError) as info:
        caller.score(1, names, _matrix(3))
    err = info.value
    assert err.code == "feature_mismatch"
    assert err.missing_features == NAMES[-2:]
    assert err.extra_features == ["f98", "f99"]
    assert "f38" in err.message and "f99" in err.message


def test_client_side_shape_errors_name_the_shape(client: ThriftRankerClient) -> None:
    with pytest.raises(ValueError, match=r"X has shape \(3, 39\)"):
        client.score(1, NAMES, _matrix(3)[:, :39])


def test_raw_thrift_requests_rows_and_bad_packed(server: RankingServer) -> None:
    raw = make_client(ranker_thrift.Ranker, "127.0.0.1", server.port, timeout=10_000)
    try:
        X = _matrix(4).astype(np.float64)
        req = ranker_thrift.ScoreRequest(
            request_id="r1", user_id=1, feature_names=NAMES, rows=X.tolist()
        )
        resp = raw.score(req)
        np.testing.assert_allclose(resp.scores, TanhScorer(1).score(NAMES, X), rtol=1e-12)
        bad = ranker_thrift.ScoreRequest(
            request_id="r2", user_id=1, feature_names=NAMES, packed=b"\0" * 10, n_rows=1,
            n_cols=N_FEATURES,
        )  # fmt: skip
        with pytest.raises(RankerError) as info:
            raw.score(bad)
        assert info.value.code == "bad_request" and "n_rows = 1" in info.value.message
        empty = ranker_thrift.ScoreRequest(request_id="r3", user_id=1, feature_names=NAMES)
        with pytest.raises(RankerError, match="neither packed nor rows"):
            raw.score(empty)
        assert raw.health().model_version == "tanh-1"
    finally:
        raw.close()


def test_model_version_pin(client: ThriftRankerClient) -> None:
    assert client.score(1, NAMES, _matrix(2), model_version="tanh-1").model_version == "tanh-1"
    with pytest.raises(RankerError) as info:
        client.score(1, NAMES, _matrix(2), model_version="tanh-9")
    assert info.value.code == "version_mismatch"


def test_hot_swap_under_concurrent_load_drops_nothing(
    server: RankingServer, service: RankingService
) -> None:
    scorers = {f"tanh-{s}": TanhScorer(s) for s in range(1, 9)}
    X = _matrix(100)
    expected = {v: s.score(NAMES, X) for v, s in scorers.items()}
    failures: list[BaseException] = []
    seen_versions: set[str] = set()
    done = threading.Event()

    def hammer() -> None:
        c = ThriftRankerClient("127.0.0.1", server.port, timeout_ms=10_000, pool_size=1)
        try:
            for _ in range(60):
                got = c.score(1, NAMES, X)
                # Every response is wholly one model's: never a mix, never an error.
                np.testing.assert_array_equal(got.scores, expected[got.model_version])
                seen_versions.add(got.model_version)
        except BaseException as e:
            failures.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    versions = list(scorers)
    i = 1  # tanh-1 is already current: the first swap changes the model
    while any(t.is_alive() for t in threads):
        service.swap(scorers[versions[i % len(versions)]])
        i += 1
        done.wait(0.002)
    for t in threads:
        t.join()
    assert failures == []
    assert len(seen_versions) > 1  # the swaps did happen while requests ran


def test_in_flight_request_finishes_on_the_old_model(
    client: ThriftRankerClient, service: RankingService
) -> None:
    gated = GatedScorer(5)
    service.swap(gated)
    X = _matrix(10)
    result: list[Scores] = []
    t = threading.Thread(target=lambda: result.append(client.score(1, NAMES, X)))
    t.start()
    assert gated.entered.wait(30)
    service.swap(TanhScorer(6))
    after = InProcessRankerClient(service).score(1, NAMES, X)
    gated.release.set()
    t.join()
    (before,) = result
    assert before.model_version == "tanh-5"
    np.testing.assert_array_equal(before.scores, TanhScorer(5).score(NAMES, X))
    assert after.model_version == "tanh-6"


def test_client_retries_once_after_a_server_restart(service: RankingService) -> None:
    first = RankingServer(service, "127.0.0.1", port=0).start()
    port = first.port
    client = ThriftRankerClient("127.0.0.1", port, timeout_ms=10_000)
    X = _matrix(5)
    assert client.score(1, NAMES, X).model_version == "tanh-1"
    first.stop()  # the pooled connection is now dead
    second = RankingServer(service, "127.0.0.1", port=port).start()
    try:
        got = client.score(1, NAMES, X)  # the dead pooled connection fails; the retry works
        np.testing.assert_array_equal(got.scores, TanhScorer(1).score(NAMES, X))
    finally:
        second.stop()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        client.score(1, NAMES, X)
    client.close()


def test_open_ranker_client_by_mode(server: RankingServer, service: RankingService) -> None:
    thrift = open_ranker_client(RankerServiceConfig(mode="thrift", port=server.port))
    embedded = open_ranker_client(RankerServiceConfig(), service)
    try:
        assert thrift.health() == embedded.health() == {
            "status": "ok", "model_version": "tanh-1", "n_features": N_FEATURES,
        }  # fmt: skip
    finally:
        thrift.close()
    with pytest.raises(ValueError, match="in_process"):
        open_ranker_client(RankerServiceConfig())


def test_service_refuses_a_scorer_with_duplicate_names() -> None:
    with pytest.raises(ValueError, match="duplicate feature names"):
        RankingService(TanhScorer(1, names=["a", "b", "a"]))
    with pytest.raises(TypeError, match="needs version, feature_names"):
        RankingService(object())  # type: ignore[arg-type]


def test_a_real_lightgbm_ranker_serves_the_scores_it_computes_in_process() -> None:
    from homefeed.config import RankerConfig
    from homefeed.models.ranker import Ranker
    from homefeed.serving.ranking.service import BundleScorer

    rng = np.random.default_rng(0)
    names = tuple(f"g{i}" for i in range(8))
    x = rng.normal(size=(3000, len(names))).astype(np.float32)
    labels = {
        "click": (x[:, 0] + rng.normal(size=3000) > 1).astype(np.int8),
        "save": (x[:, 1] + rng.normal(size=3000) > 1.5).astype(np.int8),
        "hide": (x[:, 2] + rng.normal(size=3000) > 2).astype(np.int8),
    }
    config = RankerConfig(rounds=15, min_data_in_leaf=20)  # type: ignore[call-arg]
    ranker = Ranker(config).fit(x, labels, rng.integers(0, 300, 3000), feature_names=names)
    service = RankingService(BundleScorer(ranker, names, "lgb-1"))
    X = rng.normal(size=(500, len(names))).astype(np.float32)
    with RankingServer(service, "127.0.0.1", port=0) as server:
        client = ThriftRankerClient("127.0.0.1", server.port, timeout_ms=10_000)
        got = client.score(1, list(names), X)
        client.close()
    assert got.model_version == "lgb-1"
    np.testing.assert_array_equal(got.scores, ranker.score(X))
    assert np.ptp(got.scores) > 0  # a ranker that ranks
