"""The model bundle: fitted sources, the ranker, the feature context, and what made them.

``recommend`` is the one path serving and evaluation call: gather candidates from every
source, build features with the same code as training, score with the ranker, keep the top k.
On disk a bundle is a directory of ``.npy``/``.npz``, JSON and LightGBM model text with a
``bundle.json`` manifest; nothing in it is pickled, so loading one cannot execute code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from homefeed.config import ModelsConfig
from homefeed.models.features import CandidateSet, FeatureContext, FeatureSpec, build_features
from homefeed.models.ranker import Ranker
from homefeed.models.sources.base import NO_PIN, Candidates, CandidateSource

BUNDLE_FORMAT = 1
RECOMMEND_CHUNK = 256  # users per gather/score pass: ~256 x 1,200 rows x 40 features


@dataclass
class ModelBundle:
    sources: dict[str, CandidateSource]
    ranker: Ranker
    context: FeatureContext
    spec: FeatureSpec
    config: ModelsConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ks(self) -> dict[str, int]:
        return {name: self.config.sources[name].k for name in self.sources}

    def recommend(
        self,
        user_ids: np.ndarray,
        k: int,
        exclude: dict[int, np.ndarray] | None = None,
        now_ms: int | None = None,
        chunk: int = RECOMMEND_CHUNK,
    ) -> Candidates:
        """The top ``k`` ranked pins of each user; ``now_ms`` defaults to the context's time."""
        if k < 1:
            raise ValueError(f"k = {k}: must be at least 1")
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = Candidates.empty(user_ids, k)
        now = self.context.as_of_ms if now_ms is None else int(now_ms)
        for start in range(0, len(user_ids), chunk):
            batch = user_ids[start : start + chunk]
            pins, scores = self._rank(batch, k, exclude, now)
            out.pins[start : start + len(batch)] = pins
            out.scores[start : start + len(batch)] = scores
        return out

    def _rank(
        self, users: np.ndarray, k: int, exclude: dict[int, np.ndarray] | None, now_ms: int
    ) -> tuple[np.ndarray, np.ndarray]:
        cs = CandidateSet.gather(self.sources, self.ks, users, exclude)
        x, spec = build_features(self.context, cs, now_ms)
        if spec != self.spec:
            raise ValueError(f"features {spec.names} (v{spec.version}) differ from the bundle's "
                             f"{self.spec.names} (v{self.spec.version})")  # fmt: skip
        score = self.ranker.score(x) if len(cs) else np.empty(0)
        return top_k_per_row(cs.row, cs.pin, score, len(users), k)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for name, source in self.sources.items():
            source.save(path / "sources" / name)
        self.ranker.save(path / "ranker")
        self.context.save(path / "context")
        manifest = {
            "format": BUNDLE_FORMAT, "sources": sorted(self.sources), "spec": self.spec.to_json(),
            "config": self.config.model_dump(mode="json"), "metadata": self.metadata,
        }  # fmt: skip
        (path / "bundle.json").write_text(json.dumps(manifest, indent=1, default=_json_default))

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        manifest = json.loads((path / "bundle.json").read_text())
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{path}/bundle.json format = {manifest.get('format')!r}: this "
                             f"version reads format {BUNDLE_FORMAT}")  # fmt: skip
        return cls(
            sources={n: CandidateSource.load(path / "sources" / n) for n in manifest["sources"]},
            ranker=Ranker.load(path / "ranker"),
            context=FeatureContext.load(path / "context"),
            spec=FeatureSpec.from_json(manifest["spec"]),
            config=ModelsConfig.model_validate(manifest["config"]),
            metadata=manifest["metadata"],
        )


def top_k_per_row(
    row: np.ndarray, pin: np.ndarray, score: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n x k) pins and scores: each row's best ``k`` by score (ties: smaller pin id first)."""
    pins = np.full((n, k), NO_PIN, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    order = np.lexsort((pin, -score, row))
    row, pin, score = row[order], pin[order], score[order]
    pos = np.arange(len(row)) - np.searchsorted(row, row)
    keep = pos < k
    pins[row[keep], pos[keep]] = pin[keep]
    scores[row[keep], pos[keep]] = score[keep]
    return pins, scores


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value {value!r} ({type(value).__name__}) is not JSON")


__all__ = ["ModelBundle", "top_k_per_row"]
