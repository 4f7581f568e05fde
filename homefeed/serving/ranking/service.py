"""``RankingService``: score candidates with the current ranker; swap rankers without a gap.

The service holds one reference to the current scorer. A request reads it once, at its
start, and finishes on that scorer; ``swap`` replaces the reference in one assignment
(atomic under the GIL), so a swap never drops or fails a request, and requests that
started before it finish on the old model.

A request's feature names are checked against the scorer's: the same names in another
order are reordered; missing or extra names fail with ``RankerError`` (code
``feature_mismatch``) listing them, because scoring a shifted matrix would silently rank
garbage.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from homefeed.serving.ranking import ranker_thrift

log = logging.getLogger(__name__)

RankerError = ranker_thrift.RankerError
MAX_CELLS = 50_000_000  # 200 MB of float32: a bigger request is a bug, not a feed


@runtime_checkable
class Scorer(Protocol):
    """What the service runs: a ranker with its feature spec and version."""

    @property
    def version(self) -> str: ...

    @property
    def feature_names(self) -> Sequence[str]: ...

    def score(self, feature_names: Sequence[str], X: np.ndarray) -> np.ndarray:
        """One score per row of X (columns in ``feature_names`` order)."""
        ...


def ranker_error(code: str, message: str, **lists: list[str]) -> Any:
    return RankerError(code=code, message=message, **lists)


class RankingService:
    """The Thrift handler (``score``, ``health``) and the in-process scoring path."""

    def __init__(self, scorer: Scorer) -> None:
        _check_scorer(scorer)
        self._scorer = scorer
        self._swap_lock = threading.Lock()

    @property
    def scorer(self) -> Scorer:
        return self._scorer

    def swap(self, scorer: Scorer) -> Scorer:
        """Make ``scorer`` current; returns the previous one (its requests still finish)."""
        _check_scorer(scorer)
        with self._swap_lock:
            old, self._scorer = self._scorer, scorer
        log.info("ranker swapped: %s -> %s", old.version, scorer.version)
        return old

    def score_matrix(
        self, feature_names: Sequence[str], X: np.ndarray, model_version: str | None = None
    ) -> tuple[np.ndarray, str]:
        """Scores of X's rows and the version that computed them; raises ``RankerError``."""
        scorer = self._scorer  # read once: this request finishes on this model
        if model_version and model_version != scorer.version:
            raise ranker_error(
                "version_mismatch",
                f"model_version = {model_version!r} requested; serving {scorer.version!r}",
            )
        X = _aligned(list(feature_names), X, list(scorer.feature_names))
        scores = np.asarray(scorer.score(list(scorer.feature_names), X), dtype=np.float64)
        if scores.shape != (X.shape[0],):
            raise ranker_error(
                "internal", f"ranker {scorer.version} returned shape {scores.shape} for "
                f"{X.shape[0]} rows",
            )  # fmt: skip
        return scores, scorer.version

    # Thrift handler methods: the names and signatures of service Ranker in ranker.thrift.
    def score(self, req: Any) -> Any:
        try:
            X = decode_matrix(req)
            scores, version = self.score_matrix(req.feature_names, X, req.model_version)
        except RankerError:
            raise
        except Exception as e:  # anything else still reaches the caller as a RankerError
            log.exception("scoring request %s failed", req.request_id)
            raise ranker_error("internal", f"{type(e).__name__}: {e}") from e
        return ranker_thrift.ScoreResponse(scores=scores.tolist(), model_version=version)

    def health(self) -> Any:
        scorer = self._scorer
        return ranker_thrift.HealthResponse(
            status="ok", model_version=scorer.version, n_features=len(scorer.feature_names)
        )


def _check_scorer(scorer: Any) -> None:
    if not isinstance(scorer, Scorer):
        raise TypeError(f"scorer {scorer!r}: needs version, feature_names and score(names, X)")
    names = list(scorer.feature_names)
    if len(set(names)) != len(names):
        raise ValueError(f"scorer {scorer.version}: duplicate feature names in {names}")


def _aligned(given: list[str], X: np.ndarray, expected: list[str]) -> np.ndarray:
    """X with columns in ``expected`` order, or a RankerError naming what does not match."""
    if X.ndim != 2 or X.shape[1] != len(given):
        raise ranker_error(
            "bad_request", f"matrix shape {X.shape} does not match {len(given)} feature names"
        )
    if given == expected:
        return X
    if len(set(given)) != len(given):
        dups = sorted({n for n in given if given.count(n) > 1})
        raise ranker_error("bad_request", f"duplicate feature names: {dups}")
    missing = [n for n in expected if n not in set(given)]
    extra = [n for n in given if n not in set(expected)]
    if missing or extra:
        raise ranker_error(
            "feature_mismatch",
            f"features do not match the ranker's: missing {missing}, extra {extra}",
            missing_features=missing,
            extra_features=extra,
        )
    position = {name: i for i, name in enumerate(given)}
    return X[:, [position[n] for n in expected]]


def decode_matrix(req: Any) -> np.ndarray:
    """The request's matrix: ``packed`` float32 (preferred) or ``rows`` of doubles."""
    if req.packed is not None:
        n_rows, n_cols = req.n_rows, req.n_cols
        if n_rows is None or n_cols is None or n_rows < 0 or n_cols < 0:
            raise ranker_error(
                "bad_request", f"packed needs n_rows, n_cols >= 0: {n_rows}, {n_cols}"
            )
        if n_rows * n_cols > MAX_CELLS or len(req.packed) != 4 * n_rows * n_cols:
            raise ranker_error(
                "bad_request",
                f"packed has {len(req.packed)} bytes; n_rows = {n_rows}, n_cols = {n_cols} "
                f"needs {4 * n_rows * n_cols}",
            )
        return np.frombuffer(req.packed, dtype="<f4").reshape(n_rows, n_cols)
    if req.rows is not None:
        if not req.rows:
            return np.empty((0, len(req.feature_names)), dtype=np.float64)
        try:
            return np.asarray(req.rows, dtype=np.float64)
        except ValueError as e:  # ragged rows
            raise ranker_error("bad_request", f"rows: {e}") from e
    raise ranker_error("bad_request", "the request has neither packed nor rows")


class RankingServer:
    """A threaded Thrift server for ``service``: ``start()`` in the background or ``serve()``."""

    def __init__(
        self,
        service: RankingService,
        host: str = "127.0.0.1",
        port: int = 9090,
        idle_timeout_ms: int = 60_000,
    ) -> None:
        from thriftpy2.protocol import TCyBinaryProtocolFactory
        from thriftpy2.server import TThreadedServer
        from thriftpy2.thrift import TProcessor
        from thriftpy2.transport import TCyBufferedTransportFactory, TServerSocket

        self.service = service
        self._socket = TServerSocket(host=host, port=port, client_timeout=idle_timeout_ms)
        self._server = TThreadedServer(
            TProcessor(ranker_thrift.Ranker, service),
            self._socket,
            iprot_factory=TCyBinaryProtocolFactory(),
            itrans_factory=TCyBufferedTransportFactory(),
            daemon=True,
        )
        self._thread: threading.Thread | None = None
        self._clients: set[Any] = set()
        self._clients_lock = threading.Lock()
        self.host = host
        self.port = port

    def bind(self) -> int:
        """Listen now (errors surface here, not in a thread); returns the bound port."""
        if self._socket.sock is None:
            self._socket.listen()
            assert self._socket.sock is not None
            self.port = int(self._socket.sock.getsockname()[1])
        return self.port

    def start(self) -> RankingServer:
        self.bind()
        self._thread = threading.Thread(target=self.serve, name="ranker-server", daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        """Accept connections until ``stop()``; each connection gets a thread."""
        self.bind()
        while not self._server.closed:
            try:
                client = self._socket.accept()
            except OSError:
                if self._server.closed:
                    return
                raise
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: Any) -> None:
        with self._clients_lock:
            self._clients.add(client)
        try:
            self._server.handle(client)
        finally:
            with self._clients_lock:
                self._clients.discard(client)

    def stop(self) -> None:
        """Stop accepting, close open connections, wait for the accept loop."""
        self._server.closed = True
        self._socket.close()
        with self._clients_lock:
            for client in list(self._clients):
                _shutdown(client)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> RankingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _shutdown(client: Any) -> None:
    # shutdown, not close: the connection's thread sees end-of-file, exits and closes it.
    with contextlib.suppress(OSError, AttributeError):
        client.sock.shutdown(socket.SHUT_RDWR)


class BundleScorer:
    """A model bundle's ranker as a ``Scorer`` (``Ranker.score(X)``: weighted sum of heads)."""

    def __init__(self, ranker: Any, feature_names: Sequence[str], version: str) -> None:
        self.ranker = ranker
        self.feature_names = list(feature_names)
        self.version = version

    def score(self, feature_names: Sequence[str], X: np.ndarray) -> np.ndarray:
        return np.asarray(self.ranker.score(X), dtype=np.float64)


def scorer_from_bundle(bundle_dir: str | Path) -> Scorer:
    """Load ``homefeed.models.bundle.ModelBundle`` from ``bundle_dir`` and wrap its ranker.

    The version is the bundle metadata's ``model_version`` (or ``version``), else the
    directory name, which the registry makes unique per trained model.
    """
    from homefeed.models.bundle import ModelBundle

    path = Path(bundle_dir)
    bundle = ModelBundle.load(path)
    names = list(bundle.ranker.feature_names)
    if not names:
        raise ValueError(f"bundle {path}: its ranker has no feature_names (was it fitted?)")
    meta = bundle.metadata
    version = meta.get("model_version") or meta.get("version") or path.resolve().name
    return BundleScorer(bundle.ranker, names, str(version))


def serve(host: str, port: int, bundle_dir: str | Path) -> None:
    """``homefeed ranker serve``: serve the bundle's ranker; SIGHUP reloads the bundle."""
    service = RankingService(scorer_from_bundle(bundle_dir))
    server = RankingServer(service, host, port)

    def reload(signum: int, frame: object) -> None:
        try:
            service.swap(scorer_from_bundle(bundle_dir))
        except Exception:  # keep serving the old model rather than die on a bad bundle
            log.exception("reloading %s failed; still serving %s", bundle_dir, service.scorer)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, reload)
    log.info("ranker %s serving on %s:%d", service.scorer.version, host, server.bind())
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
