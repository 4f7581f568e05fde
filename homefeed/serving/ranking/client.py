"""Ranking clients: one interface, over Thrift or in process (the embedded default).

``ThriftRankerClient`` keeps a pool of connections (one per concurrent caller, up to
``pool_size`` kept idle), sends the matrix packed as float32, times out each call after
``timeout_ms`` and retries once on a connection error (a pooled connection the server closed,
a restarted server) but never on a timeout, which would double the load of a slow server.
``InProcessRankerClient`` calls the service directly, with the same float32 conversion, so
both return identical scores. Both raise ``RankerError`` for requests the ranker refuses.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from homefeed.closing import Closing
from homefeed.serving.ranking import ranker_thrift
from homefeed.serving.ranking.service import RankerError, RankingService, Scorer
from homefeed.serving.settings import RankerServiceConfig

__all__ = [
    "InProcessRankerClient",
    "RankerClient",
    "RankerError",
    "Scores",
    "ThriftRankerClient",
    "open_ranker_client",
]


@dataclass(frozen=True)
class Scores:
    scores: np.ndarray  # float64, one per candidate row
    model_version: str


class RankerClient(Protocol):
    def score(
        self,
        user_id: int,
        feature_names: Sequence[str],
        X: np.ndarray,
        *,
        pin_ids: Sequence[int] | None = None,
        model_version: str | None = None,
        request_id: str | None = None,
    ) -> Scores: ...

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def as_float32(X: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    """The wire format of the matrix: C-ordered little-endian float32, shape checked."""
    X = np.ascontiguousarray(X, dtype="<f4")
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(
            f"X has shape {X.shape}; expected (n_rows, {len(feature_names)}) for the feature names"
        )
    return X


class InProcessRankerClient(Closing):
    """Scores in this process (no network hop); the interface of ``ThriftRankerClient``."""

    def __init__(self, service: RankingService | Scorer) -> None:
        self.service = service if isinstance(service, RankingService) else RankingService(service)

    def score(
        self,
        user_id: int,
        feature_names: Sequence[str],
        X: np.ndarray,
        *,
        pin_ids: Sequence[int] | None = None,
        model_version: str | None = None,
        request_id: str | None = None,
    ) -> Scores:
        X = as_float32(X, feature_names)
        scores, version = self.service.score_matrix(feature_names, X, model_version)
        return Scores(scores, version)

    def health(self) -> dict[str, Any]:
        return _health_dict(self.service.health())


class ThriftRankerClient(Closing):
    def __init__(
        self, host: str = "127.0.0.1", port: int = 9090, timeout_ms: int = 1000, pool_size: int = 8
    ) -> None:
        self.host, self.port, self.timeout_ms = host, port, timeout_ms
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=pool_size)
        self._closed = threading.Event()

    def score(
        self,
        user_id: int,
        feature_names: Sequence[str],
        X: np.ndarray,
        *,
        pin_ids: Sequence[int] | None = None,
        model_version: str | None = None,
        request_id: str | None = None,
    ) -> Scores:
        X = as_float32(X, feature_names)
        req = ranker_thrift.ScoreRequest(
            request_id=request_id or uuid.uuid4().hex,
            user_id=int(user_id),
            model_version=model_version,
            feature_names=list(feature_names),
            packed=X.tobytes(),
            n_rows=X.shape[0],
            n_cols=X.shape[1],
            pin_ids=None if pin_ids is None else [int(p) for p in pin_ids],
        )
        resp = self._call("score", req)
        return Scores(np.asarray(resp.scores, dtype=np.float64), resp.model_version)

    def health(self) -> dict[str, Any]:
        return _health_dict(self._call("health"))

    def _call(self, method: str, *args: Any) -> Any:
        from thriftpy2.transport import TTransportException

        for attempt in (1, 2):
            client = None
            try:
                client = self._checkout()
                result = getattr(client, method)(*args)
            except RankerError:
                self._checkin(client)  # the connection is fine; the request was refused
                raise
            except (TTransportException, OSError) as e:
                _close(client)
                if attempt == 2 or _is_timeout(e):
                    raise ConnectionError(
                        f"ranker at {self.host}:{self.port}: {method} failed: {e}"
                    ) from e
                continue
            except BaseException:
                _close(client)  # the connection may hold half a reply
                raise
            self._checkin(client)
            return result
        raise AssertionError("unreachable")

    def _checkout(self) -> Any:
        if self._closed.is_set():
            raise ConnectionError("ranker client is closed")
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._connect()

    def _connect(self) -> Any:
        from thriftpy2.rpc import make_client

        return make_client(ranker_thrift.Ranker, self.host, self.port, timeout=self.timeout_ms)

    def _checkin(self, client: Any) -> None:
        if self._closed.is_set():
            client.close()
            return
        try:
            self._idle.put_nowait(client)
        except queue.Full:
            client.close()

    def close(self) -> None:
        self._closed.set()
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def open_ranker_client(
    config: RankerServiceConfig, service: RankingService | Scorer | None = None
) -> InProcessRankerClient | ThriftRankerClient:
    """The client the config names; ``in_process`` needs the service (or scorer) to call."""
    if config.mode == "thrift":
        return ThriftRankerClient(config.host, config.port, config.timeout_ms, config.pool_size)
    if service is None:
        raise ValueError("serving.ranker.mode = 'in_process' needs a ranking service or scorer")
    return InProcessRankerClient(service)


def _is_timeout(error: BaseException) -> bool:
    from thriftpy2.transport import TTransportException

    if isinstance(error, TimeoutError):
        return True
    return isinstance(error, TTransportException) and error.type == TTransportException.TIMED_OUT


def _close(client: Any) -> None:
    if client is not None:
        client.close()


def _health_dict(resp: Any) -> dict[str, Any]:
    return {
        "status": resp.status,
        "model_version": resp.model_version,
        "n_features": resp.n_features,
    }
