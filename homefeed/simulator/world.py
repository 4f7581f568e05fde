"""The synthetic world: topics, users with latent interests, boards, pins, a follow graph.

Everything is drawn from one seeded generator, so a seed names a world. Arrays are indexed by
id (user 0..U-1, pin 0..P-1, board 0..B-1), which keeps the behaviour model vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from homefeed.config import SimulatorConfig

TOPIC_NAMES = [
    "travel", "recipes", "home_decor", "fashion", "diy", "gardening", "fitness", "art",
    "photography", "weddings", "kids", "pets", "cars", "tech", "books", "music", "beauty",
    "hair", "quotes", "design", "architecture", "crafts", "baking", "camping", "cycling",
    "coffee", "tattoos", "nails", "skincare", "minimalism", "vintage", "illustration",
]  # fmt: skip
PRE_EXISTING_SHARE = 0.7  # pins that exist before the simulation starts


def topic_names(count: int) -> list[str]:
    return [TOPIC_NAMES[i] if i < len(TOPIC_NAMES) else f"topic_{i:03d}" for i in range(count)]


def parse_start(value: str) -> float:
    """The config's start time as epoch seconds (UTC)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class World:
    topics: list[str]
    interests: np.ndarray  # users x topics, rows sum to 1
    activity: np.ndarray  # users: expected sessions per day
    board_owner: np.ndarray  # boards: owning user
    board_topic: np.ndarray  # boards: topic index
    user_boards: list[np.ndarray]  # user -> board ids
    pin_board: np.ndarray  # pins: board it was created on
    pin_creator: np.ndarray  # pins: creating user
    pin_topic: np.ndarray  # pins: primary topic index
    pin_quality: np.ndarray  # pins: 0..1
    pin_popularity: np.ndarray  # pins: Zipf-like weight
    pin_created: np.ndarray  # pins: creation time, epoch seconds
    follows_users: list[np.ndarray]  # user -> followed user ids
    follows_boards: list[np.ndarray]  # user -> followed board ids
    start: float  # epoch seconds
    seed: int

    @property
    def users(self) -> int:
        return len(self.activity)

    @property
    def pins(self) -> int:
        return len(self.pin_topic)

    def match(self, user: int, pins: np.ndarray) -> np.ndarray:
        """Interest match of ``user`` with each pin; 1.0 is an average topic for this user."""
        return np.asarray(self.interests[user, self.pin_topic[pins]] * len(self.topics))

    @classmethod
    def generate(cls, config: SimulatorConfig) -> World:
        rng = np.random.default_rng(config.seed)
        users, pins, n_topics = config.users, config.pins, config.topics
        # Sparse interests: most users care about a handful of topics.
        interests = rng.dirichlet(np.full(n_topics, 0.15), size=users).astype(np.float32)
        activity = np.clip(rng.lognormal(0.6, 0.8, size=users), 0.2, 30).astype(np.float32)
        board_owner, board_topic, user_boards = _boards(rng, interests)
        creator = _creators(rng, activity, pins)
        pin_board, pin_topic = _pin_boards(rng, creator, user_boards, board_topic, n_topics)
        start = parse_start(config.start)
        window = config.days * 86_400
        existing = rng.random(pins) < PRE_EXISTING_SHARE
        created = np.where(
            existing,
            start - rng.uniform(0, 30 * 86_400, pins),
            start + rng.uniform(0, window, pins),
        )
        popularity = 1.0 / np.power(rng.permutation(pins) + 1.0, 0.9)
        quality = rng.beta(2.0, 3.0, size=pins).astype(np.float32)
        follows_users, follows_boards = _follow_graph(
            rng, interests, creator, popularity, board_topic, board_owner
        )
        return cls(
            topic_names(n_topics), interests, activity, board_owner, board_topic, user_boards,
            pin_board, creator, pin_topic, quality, popularity, created, follows_users,
            follows_boards, start, config.seed,
        )  # fmt: skip


def _boards(
    rng: np.random.Generator, interests: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    counts = rng.integers(1, 5, size=len(interests))
    owner = np.repeat(np.arange(len(interests)), counts)
    # A board is about one of its owner's interests.
    cumulative = interests.cumsum(axis=1)[owner]
    topic = (cumulative < rng.random(len(owner))[:, None]).sum(axis=1)
    topic = np.minimum(topic, interests.shape[1] - 1)
    bounds = np.concatenate([[0], counts.cumsum()])
    user_boards = [np.arange(bounds[u], bounds[u + 1]) for u in range(len(interests))]
    return owner, topic, user_boards


def _creators(rng: np.random.Generator, activity: np.ndarray, pins: int) -> np.ndarray:
    """Heavy users and a few prolific creators make most pins."""
    weight = activity * rng.pareto(1.5, size=len(activity))
    return rng.choice(len(activity), size=pins, p=weight / weight.sum())


def _pin_boards(
    rng: np.random.Generator,
    creator: np.ndarray,
    user_boards: list[np.ndarray],
    board_topic: np.ndarray,
    n_topics: int,
) -> tuple[np.ndarray, np.ndarray]:
    pick = rng.random(len(creator))
    board = np.array(
        [user_boards[c][int(p * len(user_boards[c]))] for c, p in zip(creator, pick, strict=True)]
    )
    topic = board_topic[board].copy()
    off_topic = rng.random(len(creator)) < 0.15  # some pins do not match their board
    topic[off_topic] = rng.integers(0, n_topics, size=int(off_topic.sum()))
    return board, topic


def _follow_graph(
    rng: np.random.Generator,
    interests: np.ndarray,
    creator: np.ndarray,
    popularity: np.ndarray,
    board_topic: np.ndarray,
    board_owner: np.ndarray,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Users follow popular creators whose interests resemble theirs, and boards on their topics.

    Candidates are drawn by popularity first and then weighted by similarity, so the cost is
    linear in users rather than quadratic.
    """
    users, boards = len(interests), len(board_topic)
    creator_pop = np.bincount(creator, weights=popularity, minlength=users) + 1e-6
    cumulative = np.cumsum(creator_pop / creator_pop.sum())
    follows_users, follows_boards = [], []
    for u in range(users):
        candidates = np.unique(np.searchsorted(cumulative, rng.random(64), side="right"))
        candidates = candidates[(candidates != u) & (candidates < users)]
        k = min(len(candidates), int(rng.poisson(8)))
        weight = interests[candidates] @ interests[u] + 0.01
        follows_users.append(
            np.sort(rng.choice(candidates, size=k, replace=False, p=weight / weight.sum()))
        )
        board_candidates = rng.integers(0, boards, size=64)
        board_candidates = np.unique(board_candidates[board_owner[board_candidates] != u])
        kb = min(len(board_candidates), int(rng.poisson(2)))
        weight_b = interests[u, board_topic[board_candidates]] + 1e-6
        follows_boards.append(
            np.sort(
                rng.choice(board_candidates, size=kb, replace=False, p=weight_b / weight_b.sum())
            )
        )
    return follows_users, follows_boards
