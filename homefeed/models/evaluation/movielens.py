"""MovieLens 100K under Microsoft Recommenders' protocol, homefeed beside its peers.

Protocol (the one their ML-100K benchmark table uses): ``python_stratified_split`` with ratio
0.75 and seed 42 (reimplemented exactly in NumPy below), every model fits on the train part,
recommends the top k among each user's *unseen* items, and the ground truth is all of the
user's test items whatever their rating. Metrics are ``metrics.ranking_metrics``.

Ratings become ``TrainingData`` the way the importer maps them: a movie is a pin whose topics
are its genres and whose text is its title, each rater owns one board (id = user id), a rating
>= 4 is a save to that board and a lower rating a click.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import sparse

from homefeed.config import ModelsConfig
from homefeed.models.data import (
    EMPTY_I64,
    Action,
    Edges,
    Engagements,
    Follows,
    IdIndex,
    Pins,
    TrainingData,
)
from homefeed.models.evaluation.metrics import find_hits, ranking_metrics, truth_from_pairs
from homefeed.models.sources.base import Candidates

log = logging.getLogger(__name__)

GENRES = (
    "unknown", "action", "adventure", "animation", "childrens", "comedy", "crime",
    "documentary", "drama", "fantasy", "film_noir", "horror", "musical", "mystery", "romance",
    "sci_fi", "thriller", "war", "western",
)  # fmt: skip

# NDCG@10 etc. of Recommenders' ML-100K benchmark (their README, same split and metrics).
PUBLISHED: dict[str, dict[str, float]] = {
    "BiVAE (published)": {"map": 0.146, "ndcg": 0.475, "precision": 0.411, "recall": 0.219},
    "BPR (published)": {"map": 0.132, "ndcg": 0.442, "precision": 0.388, "recall": 0.212},
    "SAR (published)": {"map": 0.110, "ndcg": 0.382, "precision": 0.330, "recall": 0.176},
}


class MovieLensFormatError(ValueError):
    """A MovieLens file is missing or does not have the expected fields."""


@dataclass(frozen=True)
class Ratings:
    """u.data as columns, in file order (the order the split's random draws follow)."""

    user_id: np.ndarray  # int64
    item_id: np.ndarray  # int64
    rating: np.ndarray  # int8
    timestamp: np.ndarray  # int64 unix seconds

    def __len__(self) -> int:
        return len(self.user_id)

    def select(self, mask: np.ndarray) -> Ratings:
        return Ratings(
            self.user_id[mask], self.item_id[mask], self.rating[mask], self.timestamp[mask]
        )


@dataclass(frozen=True)
class Movies:
    """u.item: sorted ids, titles, release dates (epoch seconds, -1 unknown), genre flags."""

    item_id: np.ndarray  # int64 sorted
    title: tuple[str, ...]
    release_s: np.ndarray  # int64
    genres: np.ndarray  # bool (movies, len(GENRES))


def read_ratings(path: Path) -> Ratings:
    if not path.is_file():
        raise MovieLensFormatError(f"{path} not found: expected a MovieLens 100K directory")
    try:
        table = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError as e:
        raise MovieLensFormatError(
            f"{path}: expected 4 tab-separated integers per line: {e}"
        ) from None
    if table.shape[1] != 4:
        raise MovieLensFormatError(f"{path}: expected 4 fields per line, got {table.shape[1]}")
    return Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.int8), table[:, 3])


def read_movies(path: Path) -> Movies:
    """u.item, latin-1, '|' separated: id|title|release|video release|url|19 genre flags."""
    rows: list[tuple[int, str, int, list[bool]]] = []
    with path.open(encoding="latin-1") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("|")
            if len(parts) < 5 + len(GENRES) or not parts[0].isdigit():
                raise MovieLensFormatError(
                    f"{path}:{number}: expected an id and {5 + len(GENRES)} '|' fields"
                )
            flags = [p == "1" for p in parts[5 : 5 + len(GENRES)]]
            rows.append((int(parts[0]), parts[1], _release_seconds(parts[2]), flags))
    rows.sort(key=lambda r: r[0])
    return Movies(
        np.array([r[0] for r in rows], dtype=np.int64),
        tuple(r[1] for r in rows),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=bool).reshape(len(rows), len(GENRES)),
    )


def _release_seconds(text: str) -> int:
    try:
        return int(datetime.strptime(text, "%d-%b-%Y").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return -1


def load_movielens(directory: Path) -> tuple[Ratings, Movies]:
    """u.data and u.item of an ML-100K directory (u.user is not needed by any model here)."""
    directory = Path(directory)
    ratings = read_ratings(directory / "u.data")
    item_file = directory / "u.item"
    if not item_file.is_file():
        raise MovieLensFormatError(f"{item_file} not found: expected a MovieLens 100K directory")
    return ratings, read_movies(item_file)


def stratified_split(
    users: np.ndarray, ratio: float = 0.75, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Recommenders' ``python_stratified_split`` (one ratio): (train mask, test mask).

    Their algorithm: ``np.random.seed(seed)``, one uniform draw per row in row order, sort by
    (user, draw), rank each row within its user as (position + 1) / count, train = rank <=
    ratio. The legacy global generator is ``RandomState(seed)``, drawn the same way here.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    train = user_ranks(users, seed) <= ratio
    return train, ~train


def user_ranks(users: np.ndarray, seed: int = 42) -> np.ndarray:
    """Each row's rank within its user in (0, 1]: (position + 1) / count in a seeded shuffle."""
    users = np.asarray(users, dtype=np.int64)
    draws = np.random.RandomState(seed).rand(len(users))
    order = np.lexsort((draws, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    first = np.repeat(starts, counts)
    ranks = np.empty(len(users), dtype=np.float64)
    ranks[order] = (np.arange(len(users)) - first + 1) / np.repeat(counts, counts)
    return ranks


def training_data(ratings: Ratings, movies: Movies) -> TrainingData:
    """Ratings as TrainingData: pins = movies (topics = genres), one board per rater."""
    pin_ids = np.union1d(movies.item_id, ratings.item_id)
    in_catalogue = np.isin(pin_ids, movies.item_id)
    flags = np.zeros((len(pin_ids), len(GENRES)), dtype=bool)
    flags[in_catalogue] = movies.genres[np.searchsorted(movies.item_id, pin_ids[in_catalogue])]
    rows, codes = np.nonzero(flags)
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(pin_ids)))].astype(np.int64)
    titles = dict(zip(movies.item_id.tolist(), movies.title, strict=True))
    first_ms = int(ratings.timestamp.min(initial=0)) * 1000
    # A movie is "created" when released (all releases precede the ratings), else at the start.
    created_ms = np.full(len(pin_ids), first_ms, dtype=np.int64)
    released = movies.release_s[np.searchsorted(movies.item_id, pin_ids[in_catalogue])]
    created_ms[in_catalogue] = np.where(
        released >= 0, np.minimum(released * 1000, first_ms), first_ms
    )
    time_ms = ratings.timestamp * 1000
    action = np.where(ratings.rating >= 4, Action.SAVE, Action.CLICK).astype(np.int8)
    saved = action == Action.SAVE
    boards = np.unique(ratings.user_id)
    return TrainingData(
        engagements=Engagements(ratings.user_id.copy(), ratings.item_id.copy(), action, time_ms),
        pins=Pins(
            pin_id=pin_ids,
            creator_id=np.full(len(pin_ids), -1, dtype=np.int64),
            created_ms=created_ms,
            topic_indptr=indptr,
            topic_codes=codes.astype(np.int32),
            topics=GENRES,
            text=tuple(titles.get(int(p), "") for p in pin_ids),
        ),
        pin_boards=Edges(
            ratings.item_id[saved], ratings.user_id[saved], np.ones(int(saved.sum()), np.float32)
        ),
        board_owner=Edges(boards, boards.copy(), np.ones(len(boards), dtype=np.float32)),
        follows=Follows(EMPTY_I64, np.empty(0, dtype=np.int8), EMPTY_I64),
        as_of_ms=int(time_ms.max(initial=0)) + 1,
        meta={"source": "movielens", "ratings": len(ratings), "mode": "ratings"},
    )


class Recommender(Protocol):
    """What evaluation needs of a fitted model (a ``ModelBundle`` is one)."""

    def recommend(
        self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray]
    ) -> Candidates: ...


ModelFactory = Callable[[TrainingData], Recommender]  # fits on the data, returns the model


def interactions(data: TrainingData) -> tuple[IdIndex, IdIndex, sparse.csr_matrix]:
    """Binary users x pins matrix of positive engagements (any positive action counts)."""
    pos = data.positives()
    users, pins = IdIndex.of(pos.user_id), data.pins.index
    rows, cols = users.index(pos.user_id), pins.index(pos.pin_id)
    keep = cols >= 0
    matrix = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
        shape=(len(users), len(pins)),
    )
    matrix.data[:] = 1.0  # duplicates summed by the constructor count once
    return users, pins, matrix


class ScoringModel:
    """A model that scores every pin for a user: top k after masking the user's exclusions."""

    users: IdIndex
    pins: IdIndex

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense (len(rows) x pins) scores of known users' dense rows."""
        raise NotImplementedError

    def cold_scores(self) -> np.ndarray:
        """Scores for users the model has never seen (popularity by default)."""
        return np.zeros(len(self.pins), dtype=np.float32)

    def recommend(self, user_ids: np.ndarray, k: int, exclude: dict[int, np.ndarray]) -> Candidates:
        user_ids = np.asarray(user_ids, dtype=np.int64)
        rows = self.users.index(user_ids)
        known = rows >= 0
        scores = np.empty((len(user_ids), len(self.pins)), dtype=np.float32)
        scores[known] = self.scores(rows[known])
        scores[~known] = self.cold_scores()
        mask_excluded(scores, user_ids, self.pins, exclude)
        return Candidates.from_scores(user_ids, self.pins.ids, scores, k)


def mask_excluded(
    scores: np.ndarray, user_ids: np.ndarray, pins: IdIndex, exclude: Mapping[int, np.ndarray]
) -> None:
    """Set each user's excluded pins to -inf in place."""
    given = [(i, exclude.get(int(u))) for i, u in enumerate(user_ids)]
    parts = [(i, np.asarray(p, dtype=np.int64)) for i, p in given if p is not None and len(p)]
    if not parts:
        return
    rows = np.concatenate([np.full(len(p), i) for i, p in parts])
    cols = pins.index(np.concatenate([p for _, p in parts]))
    scores[rows[cols >= 0], cols[cols >= 0]] = -np.inf


class Popularity(ScoringModel):
    """Most engaged pins first: the floor every model must beat."""

    def __init__(self, data: TrainingData) -> None:
        self.users, self.pins, matrix = interactions(data)
        self.popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(rows), len(self.pins)))

    def cold_scores(self) -> np.ndarray:
        return self.popularity


class Ease(Popularity):
    """EASE (Steck 2019): closed-form item-item weights B = I - P / diag(P), P = (X'X + lI)^-1.

    Cubic in the catalogue size: for evaluation catalogues (thousands of pins), not serving.
    """

    def __init__(self, data: TrainingData, l2: float = 400.0, dropout: float = 0.0) -> None:
        super().__init__(data)
        self.x = interactions(data)[2]
        gram = (self.x.T @ self.x).toarray().astype(np.float64)
        # dropout > 0: EDLAE's (Steck 2020) emphasis, L2 grows with each pin's popularity
        gram[np.diag_indices_from(gram)] += l2 + dropout * np.diag(gram)
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        self.weights = b.astype(np.float32)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.x[rows] @ self.weights)


class ImplicitAls(Popularity):
    """implicit's ALS (Hu, Koren, Volinsky 2008): confidence 1 + alpha on observed pairs."""

    def __init__(
        self, data: TrainingData, factors: int = 64, regularization: float = 0.05,
        alpha: float = 20.0, iterations: int = 15, seed: int = 42,
    ) -> None:  # fmt: skip
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        super().__init__(data)
        x = interactions(data)[2]
        # implicit parallelises itself; a threaded BLAS underneath only adds contention (and
        # implicit warns about it when the model is built).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=factors, regularization=regularization, alpha=alpha,
                iterations=iterations, random_state=seed, num_threads=2,
            )  # fmt: skip
            model.fit(x, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors[rows] @ self.item_factors.T


@dataclass
class ModelResult:
    """One row of the benchmark table; ``published`` rows come from the peers' papers/READMEs."""

    model: str
    map: float
    ndcg: float
    precision: float
    recall: float
    fit_seconds: float | None = None
    published: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, figures: Mapping[str, float], **rest: Any) -> ModelResult:
        return cls(name, figures["map"], figures["ndcg"], figures["precision"],
                   figures["recall"], **rest)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Split:
    """A train/test split of ratings, with the train part as TrainingData."""

    train: Ratings
    test: Ratings
    movies: Movies
    data: TrainingData

    @classmethod
    def of(cls, ratings: Ratings, movies: Movies, ratio: float = 0.75, seed: int = 42) -> Split:
        train, test = stratified_split(ratings.user_id, ratio, seed)
        part = ratings.select(train)
        return cls(part, ratings.select(test), movies, training_data(part, movies))

    def exclude(self) -> dict[int, np.ndarray]:
        return group_items(self.train.user_id, self.train.item_id)

    def test_users(self) -> np.ndarray:
        return np.unique(self.test.user_id)


def group_items(users: np.ndarray, items: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(users, kind="stable")
    u, starts = np.unique(users[order], return_index=True)
    return dict(zip(u.tolist(), np.split(items[order], starts[1:]), strict=True))


def evaluate(model: Recommender, split: Split, k: int) -> dict[str, float]:
    """Ranking metrics of the model's top k unseen items against all test items."""
    users = split.test_users()
    recs = model.recommend(users, k, split.exclude())
    indptr, items = truth_from_pairs(users, split.test.user_id, split.test.item_id)
    return ranking_metrics(find_hits(recs.pins, indptr, items))


def peer_models() -> dict[str, ModelFactory]:
    return {"EASE (l2=400)": Ease, "ALS (implicit)": ImplicitAls, "popularity": Popularity}


def homefeed_model(config: ModelsConfig | None = None) -> ModelFactory:
    """homefeed's bundle (sources + LightGBM ranker) trained in ratings mode."""

    def fit(data: TrainingData) -> Recommender:
        from homefeed.models.pipeline import train_bundle

        return train_bundle(data, config or ModelsConfig())  # type: ignore[call-arg]

    return fit


def default_models(config: ModelsConfig | None = None) -> dict[str, ModelFactory]:
    """homefeed's bundle first, then the peers run in the same process on the same split,
    then homefeed's evaluation blend (EASE + session EASE + time signals, ``blend.py``)."""
    from homefeed.models.evaluation.blend import BlendedRecommender
    from homefeed.models.evaluation.tuning import StackedRecommender

    return {
        "homefeed": homefeed_model(config),
        "homefeed stack (tuning)": StackedRecommender.fit,
        **peer_models(),
        "homefeed blend (EASE + sessions + genres + time)": BlendedRecommender.fit,
    }


def run_models(split: Split, models: Mapping[str, ModelFactory], k: int = 10) -> list[ModelResult]:
    """Fit each model on the split's train part and evaluate it; a failing model is a row too."""
    results = []
    for name, factory in models.items():
        start = time.perf_counter()
        try:
            model = factory(split.data)
            seconds = time.perf_counter() - start
            figures = evaluate(model, split, k)
        except Exception as e:  # one broken model must not hide the others' figures
            log.exception("model %s failed", name)
            failed = dict.fromkeys(("map", "ndcg", "precision", "recall"), float("nan"))
            results.append(ModelResult.of(name, failed, error=f"{type(e).__name__}: {e}"))
            continue
        results.append(ModelResult.of(name, figures, fit_seconds=seconds))
        log.info("%s: %s in %.1f s", name, figures, seconds)
    return results


def run_movielens(
    directory: Path, k: int = 10, models: Mapping[str, ModelFactory] | None = None,
    include_published: bool = True, config: ModelsConfig | None = None,
) -> list[ModelResult]:  # fmt: skip
    """The whole benchmark: load, split (0.75, seed 42), fit and evaluate every model."""
    ratings, movies = load_movielens(directory)
    split = Split.of(ratings, movies)
    results = run_models(split, default_models(config) if models is None else models, k)
    if include_published and k == 10:
        results += [ModelResult.of(name, m, published=True) for name, m in PUBLISHED.items()]
    return results
