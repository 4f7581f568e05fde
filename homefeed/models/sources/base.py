"""The candidate source interface and its contract.

Contract (``tests/models/test_source_contract.py`` checks it for every source):

* ``fit(data)`` learns from ``data`` only; nothing after ``data.as_of_ms`` exists for it.
  Fitting twice on the same data with the same parameters gives the same candidates.
* ``retrieve(user_ids, k, exclude)`` answers a *batch* of users at once (serving asks for one,
  evaluation for thousands) with at most ``k`` pins each, best first, scores non-increasing,
  no pin twice for a user, never a pin of that user's ``exclude`` set. Unknown users get what
  the source can give without history (possibly nothing), never an error.
* ``save(dir)`` / ``load(dir)`` round-trip exactly: the loaded source retrieves the same
  candidates. Files are NumPy ``.npy``/``.npz`` and JSON, never pickle, so a bundle from the
  registry cannot execute code.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from homefeed.models.data import IdIndex, TrainingData

NO_PIN = -1  # padding in Candidates.pins


@dataclass(frozen=True)
class Candidates:
    """Row i holds user_ids[i]'s candidates: pins (n x k, NO_PIN padded) and their scores."""

    user_ids: np.ndarray  # int64 (n,)
    pins: np.ndarray  # int64 (n, k)
    scores: np.ndarray  # float32 (n, k); -inf where pins == NO_PIN

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        keep = self.pins[row] != NO_PIN
        return self.pins[row][keep], self.scores[row][keep]

    @classmethod
    def empty(cls, user_ids: np.ndarray, k: int) -> Candidates:
        n = len(user_ids)
        return cls(
            np.asarray(user_ids, dtype=np.int64),
            np.full((n, k), NO_PIN, dtype=np.int64),
            np.full((n, k), -np.inf, dtype=np.float32),
        )

    @classmethod
    def from_scores(
        cls, user_ids: np.ndarray, pin_ids: np.ndarray, scores: np.ndarray, k: int
    ) -> Candidates:
        """Top k of a dense (n x pins) score matrix; -inf scores are never returned."""
        n, m = scores.shape
        out = cls.empty(user_ids, k)
        if m == 0 or n == 0:
            return out
        kk = min(k, m)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        valid = np.isfinite(top_scores)
        out.pins[:, :kk] = np.where(valid, pin_ids[top], NO_PIN)
        out.scores[:, :kk] = np.where(valid, top_scores, -np.inf)
        return out


class CandidateSource(ABC):
    """Fits on TrainingData; retrieves up to k scored pins per user."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, data: TrainingData) -> None: ...

    @abstractmethod
    def retrieve(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None = None
    ) -> Candidates: ...

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-serialisable: ``type(self)(**params())`` is a twin."""

    @abstractmethod
    def save_state(self, path: Path) -> None:
        """Write the fitted state into the existing directory ``path`` (npy/npz/json only)."""

    @abstractmethod
    def load_state(self, path: Path) -> None: ...

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "source.json").write_text(json.dumps({"name": self.name, "params": self.params()}))
        self.save_state(path)

    @classmethod
    def load(cls, path: Path) -> CandidateSource:
        from homefeed.models.sources import make_source

        spec = json.loads((path / "source.json").read_text())
        source = make_source(spec["name"], **spec["params"])
        source.load_state(path)
        return source


def excluded_keys(
    user_ids: np.ndarray, exclude: dict[int, np.ndarray] | None, pin_ids: np.ndarray
) -> np.ndarray:
    """Sorted keys ``row * n_pins + pin index`` of each row's excluded catalogue pins."""
    if not exclude:
        return np.empty(0, dtype=np.int64)
    index = IdIndex(pin_ids)
    parts = []
    for row, user in enumerate(user_ids.tolist()):
        pins = exclude.get(user)
        if pins is not None and len(pins):
            idx = index.index(np.asarray(pins, dtype=np.int64))
            parts.append(row * len(pin_ids) + idx[idx >= 0])
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
