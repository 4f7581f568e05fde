"""The deploy loop inside a feed-serving process: router, signals and controller, wired.

``DeployLoop`` builds a ``DeployRouter`` on the state in the lake (the stable version, and the
canary if one is baking), reads the event log as ``deploy-judge`` and runs
``DeployController.run`` in a daemon thread. Hand ``loop.router`` to ``create_app`` as the
backend: the feed service's deploy hook routes each request through it.
"""

from __future__ import annotations

import threading
from types import TracebackType

from homefeed.lake.base import LakeStore
from homefeed.log.base import EventLog
from homefeed.models.registry import ModelRegistry
from homefeed.serving.deploy.controller import DeployController, DeployError
from homefeed.serving.deploy.router import DeployRouter, Loader
from homefeed.serving.deploy.settings import DeployConfig
from homefeed.serving.deploy.signals import DeploySignals
from homefeed.serving.deploy.state import DeployStore


class DeployLoop:
    def __init__(
        self,
        lake: LakeStore,
        event_log: EventLog,
        model: str,
        loader: Loader,
        config: DeployConfig | None = None,
        partitions: int = 4,
    ) -> None:
        self.config = config or DeployConfig()  # type: ignore[call-arg]
        registry = ModelRegistry(lake, model)
        store = DeployStore(lake, model)
        stable = store.load().stable or registry.production()
        if stable is None:
            raise DeployError(
                f"{model}: nothing to serve: no version was promoted "
                "(`homefeed models promote VERSION`)"
            )
        self.router = DeployRouter.single(stable, loader(stable))
        self.signals = DeploySignals(
            event_log, max_events=self.config.max_tracked_impressions, partitions=partitions
        )
        self.controller = DeployController(
            store, registry, self.config, router=self.router, signals=self.signals, loader=loader
        )
        self.controller.sync()  # a canary already baking is served from the first request
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.controller.run, args=(self._stop,), name="homefeed-deploy", daemon=True
        )

    def start(self) -> DeployLoop:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.signals.close()

    def __enter__(self) -> DeployLoop:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["DeployLoop"]
