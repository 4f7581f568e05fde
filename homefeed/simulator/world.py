"""The synthetic world: topics, users with latent interests, boards, pins and a follow graph.

A seed names a world: ``World.generate`` draws every component from its own seeded stream, so
changing how one component is drawn does not reshuffle the others. Entities are dense integer
ids (user 0..U-1, board 0..B-1, pin 0..P-1) indexing numpy arrays, which keeps the behaviour
model and the baseline feed vectorised. Times are integer epoch milliseconds (UTC).

The world is static: what changes while the simulation runs (what users saw, hid, saved and
newly followed) lives in ``behavior.UserState``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from homefeed.config import SimulatorConfig

DAY_MS = 86_400_000
TOPIC_WORDS = (
    "travel", "recipes", "home_decor", "fashion", "diy", "gardening", "fitness", "art",
    "photography", "weddings", "kids", "pets", "cars", "tech", "books", "music", "beauty",
    "hair", "quotes", "design", "architecture", "crafts", "baking", "camping", "cycling",
    "coffee", "tattoos", "nails", "skincare", "minimalism", "vintage", "illustration",
)  # fmt: skip
INTEREST_CONCENTRATION = 4.0  # Dirichlet total mass: a user cares about ~4 topics
MAX_BOARDS = 6  # boards per user, the first one always exists before the start
HISTORY_DAYS = 90  # pre-existing pins were created up to this long before the start
NEW_PIN_SHARE_PER_DAY = 0.05  # share of the catalogue created per simulated day
NEW_BOARD_SHARE = 0.1  # share of a user's later boards created during the window
SECONDARY_TOPIC_SHARE = 0.35
FOLLOW_CANDIDATES = 48  # popularity-drawn candidates per user, re-weighted by similarity
SIMILARITY_SHARPNESS = 2.0  # follow odds grow with similarity squared
# Time zones (hours from UTC) and their weights: mostly the Americas and Europe.
UTC_OFFSETS = np.array([-8, -7, -6, -5, -3, 0, 1, 2, 3, 5, 8, 9])
UTC_OFFSET_WEIGHTS = np.array([12, 4, 8, 16, 6, 10, 14, 6, 4, 8, 6, 6], dtype=np.float64)


def topic_names(count: int) -> tuple[str, ...]:
    """Readable names for the first topics, ``topic_NNN`` beyond the word list."""
    return tuple(TOPIC_WORDS[i] if i < len(TOPIC_WORDS) else f"topic_{i:03d}" for i in range(count))


def parse_start_ms(value: str) -> int:
    """The configured start (RFC 3339; naive means UTC) as epoch milliseconds."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True, eq=False)
class Csr:
    """A ragged int array: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray  # int64, rows + 1
    values: np.ndarray  # int64

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True, eq=False)
class World:
    """Users, boards, pins and follows; arrays indexed by id. Build with ``World.generate``."""

    seed: int
    start_ms: int  # start of the simulated window
    end_ms: int  # end of the window (exclusive)
    topics: tuple[str, ...]
    topic_prior: np.ndarray  # float64 (T,): global topic popularity, sums to 1
    interests: np.ndarray  # float32 (U, T): latent interest, rows sum to 1
    activity: np.ndarray  # float32 (U,): expected feed sessions per day
    utc_offset: np.ndarray  # int64 (U,): hours from UTC, shifts the user's diurnal curve
    board_owner: np.ndarray  # int64 (B,)
    board_topic: np.ndarray  # int64 (B,)
    board_created_ms: np.ndarray  # int64 (B,)
    user_boards: np.ndarray  # int64 (U, MAX_BOARDS): the user's boards, -1 padded; col 0 oldest
    pin_creator: np.ndarray  # int64 (P,)
    pin_board: np.ndarray  # int64 (P,): a board of the creator, existing when the pin is made
    pin_topic: np.ndarray  # int64 (P,): primary topic
    pin_topic2: np.ndarray  # int64 (P,): secondary topic or -1
    pin_quality: np.ndarray  # float32 (P,) in (0, 1)
    pin_popularity: np.ndarray  # float64 (P,): Zipf-like weight, sums to 1
    pin_created_ms: np.ndarray  # int64 (P,)
    follows_users: Csr  # user -> followed users at the start, sorted
    follows_boards: Csr  # user -> followed boards at the start, sorted

    @property
    def users(self) -> int:
        return len(self.activity)

    @property
    def pins(self) -> int:
        return len(self.pin_topic)

    @property
    def boards(self) -> int:
        return len(self.board_owner)

    def boards_of(self, user: int) -> np.ndarray:
        """The user's board ids (oldest first), including ones created later in the window."""
        row = self.user_boards[user]
        return row[row >= 0]

    def match(self, users: np.ndarray | int, pins: np.ndarray) -> np.ndarray:
        """Interest match of each (user, pin) pair; 1.0 is an average topic for the user.

        ``users`` is one id or an array aligned with ``pins``. A pin with a secondary topic
        matches 0.7 by its primary and 0.3 by its secondary topic.
        """
        pins = np.asarray(pins, dtype=np.int64)
        users = np.broadcast_to(np.asarray(users, dtype=np.int64), pins.shape)
        primary = self.interests[users, self.pin_topic[pins]].astype(np.float64)
        second = self.pin_topic2[pins]
        has2 = second >= 0
        secondary = self.interests[users, np.where(has2, second, 0)].astype(np.float64)
        share = np.where(has2, 0.7 * primary + 0.3 * secondary, primary)
        return np.asarray(share * len(self.topics))

    def save_board(self, users: np.ndarray, pins: np.ndarray, now_ms: np.ndarray) -> np.ndarray:
        """The board each user saves each pin to: an existing board of the pin's topic (primary
        first, then secondary), else the user's oldest board (their top interest)."""
        boards = self.user_boards[users]  # (n, MAX_BOARDS)
        exists = (boards >= 0) & (self.board_created_ms[np.maximum(boards, 0)] <= now_ms[:, None])
        topic = self.board_topic[np.maximum(boards, 0)]
        primary = exists & (topic == self.pin_topic[pins][:, None])
        secondary = exists & (topic == self.pin_topic2[pins][:, None])
        col = np.where(
            primary.any(axis=1),
            primary.argmax(axis=1),
            np.where(secondary.any(axis=1), secondary.argmax(axis=1), 0),
        )
        return np.asarray(boards[np.arange(len(users)), col])

    @classmethod
    def generate(cls, config: SimulatorConfig) -> World:
        """Draw a world from ``config`` (users, pins, topics, days, start, seed)."""
        seed = config.seed
        start = parse_start_ms(config.start)
        end = start + round(config.days * DAY_MS)
        n_topics = config.topics
        prior = _topic_prior(_rng(seed, 1), n_topics)
        interests = _interests(_rng(seed, 2), config.users, prior)
        activity, offsets = _activity(_rng(seed, 3), config.users)
        boards = _boards(_rng(seed, 4), interests, activity, start, end)
        pins = _pins(_rng(seed, 5), config.pins, interests, activity, boards, prior, start, end)
        follows_users, follows_boards = _follow_graph(
            _rng(seed, 6), interests, activity, pins, boards
        )
        return cls(
            seed=seed, start_ms=start, end_ms=end, topics=topic_names(n_topics), topic_prior=prior,
            interests=interests, activity=activity, utc_offset=offsets,
            board_owner=boards.owner, board_topic=boards.topic, board_created_ms=boards.created,
            user_boards=boards.by_user, pin_creator=pins.creator, pin_board=pins.board,
            pin_topic=pins.topic, pin_topic2=pins.topic2, pin_quality=pins.quality,
            pin_popularity=pins.popularity, pin_created_ms=pins.created,
            follows_users=follows_users, follows_boards=follows_boards,
        )  # fmt: skip


def _rng(seed: int, component: int) -> np.random.Generator:
    return np.random.default_rng([seed, component])


def _topic_prior(rng: np.random.Generator, n_topics: int) -> np.ndarray:
    """Some topics are broadly popular, others niche (Zipf over a random topic order)."""
    weight = 1.0 / np.power(rng.permutation(n_topics) + 1.0, 0.7)
    return np.asarray(weight / weight.sum())


def _interests(rng: np.random.Generator, users: int, prior: np.ndarray) -> np.ndarray:
    """Sparse Dirichlet interests centred on the topic prior."""
    alpha = INTEREST_CONCENTRATION * prior
    drawn = rng.dirichlet(alpha, size=users) + 1e-6  # no exact zeros: logs stay finite
    return np.asarray((drawn / drawn.sum(axis=1, keepdims=True)).astype(np.float32))


def _activity(rng: np.random.Generator, users: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-tailed sessions per day (mean ~2.5, a few users at 30+) and a time zone each."""
    activity = np.clip(rng.lognormal(0.5, 0.9, size=users), 0.1, 40.0).astype(np.float32)
    zones = rng.choice(UTC_OFFSETS, size=users, p=UTC_OFFSET_WEIGHTS / UTC_OFFSET_WEIGHTS.sum())
    return activity, zones.astype(np.int64)


def sample_topics(rng: np.random.Generator, interests: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One topic per entry of ``rows``, drawn from that user's interest distribution.

    Inverse CDF over all rows at once: row r's normalised cumulative sums are shifted to span
    [r, r + 1], so one ``searchsorted`` on the flattened array serves every row without
    materialising a (len(rows), T) matrix.
    """
    users, n_topics = interests.shape
    cumulative = np.cumsum(interests, axis=1, dtype=np.float64)
    cumulative /= cumulative[:, -1:]
    cumulative += np.arange(users, dtype=np.float64)[:, None]
    flat = cumulative.ravel()
    index = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return np.asarray(np.clip(index - rows * n_topics, 0, n_topics - 1))


@dataclass(frozen=True, eq=False)
class _Boards:
    owner: np.ndarray
    topic: np.ndarray
    created: np.ndarray
    by_user: np.ndarray


def _boards(
    rng: np.random.Generator, interests: np.ndarray, activity: np.ndarray, start: int, end: int
) -> _Boards:
    """1..MAX_BOARDS boards per user on distinct topics drawn from their interests (the first
    on a top interest); most exist before the start, some are created during the window."""
    users, n_topics = interests.shape
    counts = np.minimum(1 + rng.poisson(1.2 * np.power(activity, 0.3)), min(MAX_BOARDS, n_topics))
    # Gumbel top-k: distinct topics, each drawn in proportion to the user's interest.
    keys = np.log(interests) + rng.gumbel(size=interests.shape)
    kmax = int(counts.max())
    top = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax] if kmax < n_topics else None
    if top is None:
        top = np.argsort(-keys, axis=1)[:, :kmax]
    else:
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
    owner = np.repeat(np.arange(users), counts)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    topic = top[owner, slot]
    first_created = start - np.asarray(rng.uniform(30, 720, size=users)) * DAY_MS
    later = first_created[owner] + rng.random(len(owner)) * (start - first_created[owner])
    in_window = (slot > 0) & (rng.random(len(owner)) < NEW_BOARD_SHARE)
    later = np.where(in_window, start + rng.random(len(owner)) * (end - start) * 0.9, later)
    created = np.where(slot == 0, first_created[owner], later).astype(np.int64)
    by_user = np.full((users, MAX_BOARDS), -1, dtype=np.int64)
    by_user[owner, slot] = np.arange(len(owner))
    return _Boards(owner, topic.astype(np.int64), created, by_user)


@dataclass(frozen=True, eq=False)
class _Pins:
    creator: np.ndarray
    board: np.ndarray
    topic: np.ndarray
    topic2: np.ndarray
    quality: np.ndarray
    popularity: np.ndarray
    created: np.ndarray


def _pins(
    rng: np.random.Generator,
    count: int,
    interests: np.ndarray,
    activity: np.ndarray,
    boards: _Boards,
    prior: np.ndarray,
    start: int,
    end: int,
) -> _Pins:
    """Pins made by a heavy-tailed set of creators on their own boards, mostly on the board's
    topic; quality and creator fame drive a Zipf-like popularity."""
    users, n_topics = interests.shape
    fame = activity * (rng.pareto(1.2, size=users) + 0.05)
    creator = rng.choice(users, size=count, p=fame / fame.sum())
    n_boards = (boards.by_user[creator] >= 0).sum(axis=1)
    board = boards.by_user[creator, (rng.random(count) * n_boards).astype(np.int64)]
    off_board = rng.random(count) < 0.15
    topic = np.where(off_board, sample_topics(rng, interests, creator), boards.topic[board])
    topic2 = rng.choice(n_topics, size=count, p=prior)
    topic2 = np.where((rng.random(count) < SECONDARY_TOPIC_SHARE) & (topic2 != topic), topic2, -1)
    quality = rng.beta(2.0, 3.0, size=count).astype(np.float32)
    created = _pin_times(rng, boards.created[board], start, end)
    # Popular pins are better and come from famous creators, with plenty of luck.
    score = 2.5 * quality + 0.5 * np.log(fame[creator]) + rng.gumbel(size=count)
    rank = np.empty(count, dtype=np.int64)
    rank[np.argsort(-score)] = np.arange(count)
    popularity = 1.0 / np.power(rank + 1.0, 0.9)
    return _Pins(
        creator.astype(np.int64), board, topic.astype(np.int64), topic2.astype(np.int64),
        quality, popularity / popularity.sum(), created,
    )  # fmt: skip


def _pin_times(
    rng: np.random.Generator, board_created: np.ndarray, start: int, end: int
) -> np.ndarray:
    """Creation times: after the pin's board; a share per simulated day falls in the window."""
    count = len(board_created)
    window = end - start
    new_share = min(0.5, NEW_PIN_SHARE_PER_DAY * window / DAY_MS)
    board_new = board_created >= start
    in_window = board_new | (rng.random(count) < new_share)
    earliest = np.maximum(board_created, start - HISTORY_DAYS * DAY_MS)
    before = earliest + rng.random(count) * (start - earliest)
    lo = np.maximum(board_created + 60_000, start)  # a minute after a new board
    during = lo + rng.random(count) * np.maximum(end - 1 - lo, 0)
    return np.where(in_window, during, before).astype(np.int64)


def _follow_graph(
    rng: np.random.Generator,
    interests: np.ndarray,
    activity: np.ndarray,
    pins: _Pins,
    boards: _Boards,
) -> tuple[Csr, Csr]:
    """Users follow famous creators with similar interests, and popular boards on their topics.

    Candidates are drawn by fame, then kept by Gumbel top-k on fame-independent similarity, so
    cost is linear in users (chunked to bound memory), not quadratic.
    """
    users = len(interests)
    creator_fame = np.bincount(pins.creator, weights=pins.popularity, minlength=users) + 1e-9
    board_fame = (
        np.bincount(pins.board, weights=pins.popularity, minlength=len(boards.owner)) + 1e-9
    )
    k_users = rng.poisson(6.0 * np.power(activity, 0.3))
    k_boards = rng.poisson(2.0 * np.power(activity, 0.3))
    # The similarity einsum holds chunk x candidates x topics floats: keep that near 16 MB.
    chunk = max(1, 4_000_000 // (FOLLOW_CANDIDATES * interests.shape[1]))
    follows_users = _follow_targets(
        rng, k_users, creator_fame,
        lambda u, c: np.einsum("ut,uct->uc", interests[u], interests[c]),
        lambda u, c: c == u[:, None],
        chunk,
    )  # fmt: skip
    follows_boards = _follow_targets(
        rng, k_boards, board_fame,
        lambda u, c: interests[u[:, None], boards.topic[c]],
        lambda u, c: boards.owner[c] == u[:, None],
        chunk,
    )  # fmt: skip
    return follows_users, follows_boards


PairFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _follow_targets(
    rng: np.random.Generator,
    want: np.ndarray,
    fame: np.ndarray,
    similarity: PairFn,
    excluded: PairFn,
    chunk: int,
) -> Csr:
    """Per user up to ``want[u]`` distinct targets: drawn by ``fame``, chosen by similarity.

    ``similarity(users, candidates)`` and ``excluded(users, candidates)`` take a chunk of user
    ids (n,) and candidate ids (n, FOLLOW_CANDIDATES) and return (n, FOLLOW_CANDIDATES).
    """
    users = len(want)
    cumulative = np.cumsum(fame / fame.sum())
    rows: list[np.ndarray] = []
    for lo in range(0, users, chunk):
        u = np.arange(lo, min(users, lo + chunk))
        draws = rng.random((len(u), FOLLOW_CANDIDATES))
        cand = np.minimum(np.searchsorted(cumulative, draws, side="right"), len(fame) - 1)
        cand.sort(axis=1)
        dup = np.zeros_like(cand, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        keys = SIMILARITY_SHARPNESS * np.log(similarity(u, cand) + 0.01)
        keys += rng.gumbel(size=cand.shape)
        keys[dup | excluded(u, cand)] = -np.inf
        order = np.argsort(-keys, axis=1)
        ranked = np.take_along_axis(cand, order, axis=1)
        keep = (np.arange(FOLLOW_CANDIDATES) < want[u][:, None]) & np.isfinite(
            np.take_along_axis(keys, order, axis=1)
        )
        ranked = np.where(keep, ranked, np.iinfo(np.int64).max)
        ranked.sort(axis=1)
        rows.append(ranked)
    matrix = np.concatenate(rows) if rows else np.empty((0, FOLLOW_CANDIDATES), dtype=np.int64)
    valid = matrix != np.iinfo(np.int64).max
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int64)
    return Csr(offsets, matrix[valid].astype(np.int64))
