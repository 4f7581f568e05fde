"""How simulated users react to the feeds they are shown.

``UserModel.react`` takes any ranked feed (the baseline's, or a model's in an online
experiment) and returns the events the user emits; ``UserModel.react_batch`` does the same for
many sessions at once, as columns, and is what the bulk simulation runs. Both are one code
path, so a feed evaluated online meets exactly the users the training data came from.

The model, per pin at 0-based feed position ``i`` (knobs in ``Behaviour``):

* **examination** (position bias): the pin is looked at with ``(1 + i) ** -position_exponent``;
* **attractiveness**: ``sigmoid(closeup_bias + match_weight * log(match + 0.05)
  + quality_weight * (quality - 0.4))`` where ``match`` is ``World.match`` (1.0 = an average
  topic for the user), times the fatigue factors below; a pin the user hid is never engaged;
* **closeup** with probability examination x attractiveness; after a closeup, a **save**
  (``sigmoid(save_bias + save_match_weight * log(match + 0.05) + ...)``, never twice for one
  pin) to the user's board of the pin's topic, and independently a **click**;
* **hide** when examined and not closed up, likelier for poor matches and repeats;
* **fatigue**: each recent exposure of the same pin multiplies attractiveness by
  ``repeat_fatigue``; each recent view of the same topic (this feed plus earlier sessions,
  halving every ``topic_half_life_hours``) by ``topic_fatigue``, down to a floor;
* **scrolling**: after each pin the user leaves with ``stop_rate``, halved after a closeup and
  tripled after a hide (by default), so better feeds are also scrolled further;
* **follows**: a save sometimes leads to following the pin's creator or board.

Per-user state (``UserState``) is bounded: rings of the last pins seen, saved/hidden and newly
followed, and a decayed per-topic exposure count; memory does not grow with events.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from homefeed.simulator import arrays
from homefeed.simulator.columns import (
    CLICK,
    CLOSEUP,
    FOLLOW,
    HIDE,
    HIDE_REASONS,
    IMPRESSION,
    SAVE,
    EventColumns,
    Renderer,
)
from homefeed.simulator.world import World

SEEN_MEMORY = 150  # recent impressions remembered per user (repeat fatigue)
ACTED_MEMORY = 48  # recent saves and hides remembered per user
FOLLOW_MEMORY = 32  # follows made during the simulation remembered per user
MATCH_FLOOR = 0.05  # log(match + floor): a topic the user ignores is unlikely, not impossible
COMPARE_BUDGET = 4_000_000  # elements per (sessions x feed x memory) comparison chunk
REASON = {name: i for i, name in enumerate(HIDE_REASONS)}


@dataclass(frozen=True)
class Behaviour:
    """The knobs of the user model. Defaults give ~5% closeups and ~1.5% saves per impression
    on the baseline feed; an experiment can rely on each knob doing what its comment says."""

    # Scrolling and position bias.
    stop_rate: float = 0.06  # chance of leaving the feed after a pin
    stop_after_closeup: float = 0.5  # multiplies stop_rate after a closeup
    stop_after_hide: float = 3.0  # multiplies stop_rate after a hide
    position_exponent: float = 0.3  # examination = (1 + position) ** -position_exponent
    # Attractiveness (logit of closeup given examination).
    closeup_bias: float = -2.4
    match_weight: float = 1.0  # per unit of log(match + 0.05)
    quality_weight: float = 2.0  # per unit of (quality - 0.4)
    # Actions after a closeup, and hides.
    save_bias: float = -1.0
    save_match_weight: float = 0.6
    save_quality_weight: float = 1.5
    click_bias: float = -1.3
    click_quality_weight: float = 2.5
    hide_bias: float = -6.0
    hide_match_weight: float = 0.8  # hide logit falls by this per unit of log(match + 0.05)
    hide_repeat_weight: float = 1.5  # hide logit rises by this for a pin seen before
    # Fatigue.
    repeat_fatigue: float = 0.5  # attractiveness multiplier per recent exposure of the pin
    topic_fatigue: float = 0.97  # multiplier per recent view of the same topic
    topic_fatigue_floor: float = 0.25  # topic fatigue never cuts attractiveness below this
    topic_half_life_hours: float = 2.0  # past topic views count half after this long
    # Social.
    follow_creator_after_save: float = 0.06
    follow_board_after_save: float = 0.03
    # Timing (milliseconds).
    dwell_ms: float = 1500.0  # mean extra time looking at a pin, on top of dwell_min_ms
    dwell_min_ms: float = 300.0
    closeup_median_ms: float = 6000.0  # for a pin of quality 0.5
    click_away_ms: float = 30000.0  # mean time on the linked site after a click


@dataclass(frozen=True, eq=False)
class Feeds:
    """A batch of ranked feeds, one per session, as CSR: session ``s`` shows
    ``pins[offsets[s]:offsets[s + 1]]`` top first, each from ``source_names[sources[i]]``."""

    users: np.ndarray  # int64 (S,)
    start_ms: np.ndarray  # int64 (S,): when each session starts
    offsets: np.ndarray  # int64 (S + 1,)
    pins: np.ndarray  # int64 (N,)
    sources: np.ndarray  # int64 (N,)
    source_names: tuple[str, ...]
    sessions: np.ndarray  # int64 (S,): request numbers, carried to EventColumns.session

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def single(
        cls, user: int, pins: np.ndarray, sources: Sequence[str] | str, now_ms: int
    ) -> Feeds:
        names = (sources,) if isinstance(sources, str) else tuple(dict.fromkeys(sources))
        if isinstance(sources, str):
            codes = np.zeros(len(pins), dtype=np.int64)
        else:
            if len(sources) != len(pins):
                raise ValueError(f"sources has {len(sources)} entries for {len(pins)} pins")
            index = {name: i for i, name in enumerate(names)}
            codes = np.array([index[s] for s in sources], dtype=np.int64)
        return cls(
            np.array([user], dtype=np.int64), np.array([now_ms], dtype=np.int64),
            np.array([0, len(pins)], dtype=np.int64), pins.astype(np.int64), codes,
            names or ("unknown",), np.zeros(1, dtype=np.int64),
        )  # fmt: skip

    def select(self, which: np.ndarray) -> Feeds:
        """The sessions where ``which`` (bool, per session) is true, in order."""
        lengths = np.diff(self.offsets)[which]
        item = np.repeat(which, np.diff(self.offsets))
        return Feeds(
            self.users[which], self.start_ms[which], arrays.offsets_of(lengths),
            self.pins[item], self.sources[item], self.source_names, self.sessions[which],
        )  # fmt: skip


class UserState:
    """What users remember, bounded per user: recent impressions, saves and hides, follows
    made during the simulation, and a decayed count of recent views per topic."""

    def __init__(self, users: int, topics: int) -> None:
        self.seen = np.full((users, SEEN_MEMORY), -1, dtype=np.int32)
        self.seen_count = np.zeros(users, dtype=np.int64)
        self.acted = np.full((users, ACTED_MEMORY), -1, dtype=np.int64)  # pin * 2 + hidden
        self.acted_count = np.zeros(users, dtype=np.int64)
        self.follows = np.full((users, FOLLOW_MEMORY), -1, dtype=np.int64)  # id * 2 + board
        self.follows_count = np.zeros(users, dtype=np.int64)
        self.topic_load = np.zeros((users, topics), dtype=np.float32)
        self.topic_at_ms = np.zeros(users, dtype=np.int64)

    def copy(self) -> UserState:
        return copy.deepcopy(self)

    def hidden(self, users: np.ndarray, pins: np.ndarray) -> np.ndarray:
        """Whether each user (aligned with ``pins``) has hidden that pin recently."""
        return np.asarray((self.acted[users] == (pins * 2 + 1)[:, None]).any(axis=1))

    def new_follows(self, user: int) -> list[tuple[str, int]]:
        """Follows ``user`` made during the simulation, as (target type, id)."""
        codes = self.follows[user, : min(int(self.follows_count[user]), FOLLOW_MEMORY)]
        return [("board" if c & 1 else "user", int(c >> 1)) for c in codes.tolist()]


def _ring_append(
    ring: np.ndarray, count: np.ndarray, users: np.ndarray, values: np.ndarray
) -> None:
    """Append ``values`` to each user's ring, in order; a user's ``values`` must be contiguous
    in arrival order. Only the last ring-width values per user are written: numpy does not
    order duplicate fancy assignments, so nothing may be written twice."""
    if not len(users):
        return
    width = ring.shape[1]
    occ = arrays.occurrence(users)
    total = np.bincount(users, minlength=len(count))[users]
    keep = occ >= total - width
    users, values, occ = users[keep], values[keep], occ[keep]
    ring[users, (count[users] + occ) % width] = values
    np.add.at(count, users, 1)


@dataclass(frozen=True, eq=False)
class Chances:
    """Per-pin probabilities at its position, given the user's state at session start."""

    examine: np.ndarray
    attract: np.ndarray
    closeup: np.ndarray  # examine x attract
    save: np.ndarray  # given a closeup
    click: np.ndarray  # given a closeup
    hide: np.ndarray  # given no closeup
    match: np.ndarray
    repeats: np.ndarray  # earlier exposures: recent sessions plus earlier in this feed


class UserModel:
    """Simulated users of one ``World``: a behaviour (``Behaviour``) and a memory
    (``UserState``). ``react``/``react_batch`` update the memory, so fork a model per
    experiment arm with ``clone`` to give every arm the same starting users."""

    def __init__(
        self,
        world: World,
        behaviour: Behaviour | None = None,
        *,
        seed: int = 0,
        state: UserState | None = None,
        id_prefix: str | None = None,
    ) -> None:
        self.world = world
        self.b = behaviour or Behaviour()
        self.seed = seed
        self.state = state or UserState(world.users, len(world.topics))
        self.rng = np.random.default_rng([world.seed, 3, seed])
        self.renderer = Renderer(world, id_prefix or f"sim-{world.seed}-m{seed}-")
        fu, fb = world.follows_users, world.follows_boards
        self._static_user_follows = np.sort(
            arrays.segment_ids(fu.offsets) * world.users + fu.values
        )
        self._static_board_follows = np.sort(
            arrays.segment_ids(fb.offsets) * max(world.boards, 1) + fb.values
        )

    def clone(self, *, seed: int | None = None, id_prefix: str | None = None) -> UserModel:
        """An independent copy: same world and behaviour, a copy of the memory and, unless a
        new ``seed`` is given, of the random stream (so it would draw what this one draws)."""
        twin = UserModel(
            self.world, self.b, seed=self.seed if seed is None else seed,
            state=self.state.copy(), id_prefix=id_prefix,
        )  # fmt: skip
        if seed is None:
            twin.rng = copy.deepcopy(self.rng)
        return twin

    # -- the one-feed API -------------------------------------------------------------------

    def react(
        self,
        user_id: int,
        pins: Sequence[int] | np.ndarray,
        *,
        request_id: str,
        sources: Sequence[str] | str = "unknown",
        model_version: str = "unknown",
        now: float | datetime,
        rng: np.random.Generator | None = None,
        surface: str = "home_feed",
    ) -> list[dict[str, Any]]:
        """The events ``user_id`` emits when shown ``pins`` (ranked, top first) at ``now``.

        ``now`` is a datetime or epoch seconds; ``sources`` is one candidate source for all
        pins or one per pin. Returns impressions for the pins the user scrolled to (positions
        0..k-1 of the feed, k <= len(pins)) and what they did to them, in time order, starting
        at ``now``. Pass ``rng`` to control the draws (e.g. the same seed per user across the
        arms of an experiment); the model's own generator is used otherwise. Updates the
        user's memory (fatigue, hides, saves, follows).
        """
        feed = self._checked_pins(pins)
        if not len(feed):
            return []
        now_ms = int((now.timestamp() if isinstance(now, datetime) else now) * 1000)
        batch = Feeds.single(user_id, feed, sources, now_ms)
        cols = self.react_batch(batch, rng).sorted_by_time()
        names = batch.source_names
        return list(self.renderer.render(cols, names, model_version, lambda _: request_id, surface))

    def probabilities(
        self, user_id: int, pins: Sequence[int] | np.ndarray, now: float | None = None
    ) -> Chances:
        """The chances for each pin of a feed shown to ``user_id`` now, without side effects.

        ``now`` (epoch seconds) sets how far topic fatigue has decayed; None: no decay."""
        feed = self._checked_pins(pins)
        now_ms = int(self.state.topic_at_ms[user_id]) if now is None else int(now * 1000)
        return self._chances(Feeds.single(user_id, feed, "unknown", now_ms))

    def expected_saves(
        self, user_id: int, pins: Sequence[int] | np.ndarray, now: float | None = None
    ) -> float:
        """Expected saves from showing ``pins`` now: an offline yardstick for feeds. Uses the
        mean stop hazard per pin (the real one depends on the drawn outcome)."""
        c = self.probabilities(user_id, pins, now)
        b = self.b
        p_hide = (1.0 - c.closeup) * c.examine * c.hide
        p_plain = 1.0 - c.closeup - p_hide
        hazard = b.stop_rate * (
            c.closeup * b.stop_after_closeup + p_hide * b.stop_after_hide + p_plain
        )
        reach = np.concatenate([[1.0], np.cumprod(1.0 - np.minimum(hazard, 1.0))[:-1]])
        return float(np.sum(reach * c.closeup * c.save))

    # -- the batch API ----------------------------------------------------------------------

    def react_batch(self, feeds: Feeds, rng: np.random.Generator | None = None) -> EventColumns:
        """Play every session of ``feeds``; events as columns, grouped by kind (not sorted).

        Sessions of one user are played in batch order, each seeing the memory the previous
        left; sessions of different users are independent and played together."""
        rng = self.rng if rng is None else rng
        rounds = arrays.occurrence(feeds.users)
        if not len(rounds) or rounds.max() == 0:
            return self._play(feeds, rng)
        return EventColumns.concat(
            [self._play(feeds.select(rounds == r), rng) for r in range(int(rounds.max()) + 1)]
        )

    def _checked_pins(self, pins: Sequence[int] | np.ndarray) -> np.ndarray:
        feed = np.asarray(pins, dtype=np.int64).reshape(-1)
        if len(feed) and (feed.min() < 0 or feed.max() >= self.world.pins):
            raise ValueError(f"pin ids must be in [0, {self.world.pins})")
        return feed

    def _chances(self, feeds: Feeds) -> Chances:
        """Probabilities for every pin of ``feeds`` (users unique in the batch)."""
        w, b, st = self.world, self.b, self.state
        seg = arrays.segment_ids(feeds.offsets)
        pos = arrays.positions(feeds.offsets)
        users, pins = feeds.users[seg], feeds.pins
        topic = w.pin_topic[pins]
        seen_before, saved, hidden = self._memory(feeds)
        repeats = seen_before + arrays.occurrence(seg * w.pins + pins)
        decay = np.power(
            0.5, (feeds.start_ms - st.topic_at_ms[feeds.users]) / (3.6e6 * b.topic_half_life_hours)
        )
        load = st.topic_load[users, topic] * decay[seg] + arrays.occurrence(
            seg * len(w.topics) + topic
        )
        floor = b.topic_fatigue_floor
        fatigue = np.power(b.repeat_fatigue, repeats) * (
            floor + (1.0 - floor) * np.power(b.topic_fatigue, load)
        )
        match = w.match(users, pins)
        log_match = np.log(match + MATCH_FLOOR)
        quality = w.pin_quality[pins].astype(np.float64) - 0.4
        attract = _sigmoid(b.closeup_bias + b.match_weight * log_match + b.quality_weight * quality)
        attract = np.where(hidden, 0.0, attract * fatigue)
        examine = np.power(1.0 + pos, -b.position_exponent)
        save = _sigmoid(
            b.save_bias + b.save_match_weight * log_match + b.save_quality_weight * quality
        )
        first_showing = arrays.occurrence(seg * w.pins + pins) == 0
        save = np.where(saved | ~first_showing, 0.0, save)
        click = _sigmoid(b.click_bias + b.click_quality_weight * quality + 0.3 * log_match)
        hide = _sigmoid(
            b.hide_bias - b.hide_match_weight * log_match - 2.0 * quality
            + b.hide_repeat_weight * (repeats > 0)
        )  # fmt: skip
        return Chances(examine, attract, examine * attract, save, click, hide, match, repeats)

    def _memory(self, feeds: Feeds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per feed pin: exposures among the user's recent impressions, and whether the user
        recently saved / hid it. Compares each feed against its user's rings, in chunks."""
        st = self.state
        n_sessions = len(feeds)
        lengths = np.diff(feeds.offsets)
        width = int(lengths.max()) if n_sessions else 0
        padded = np.full((n_sessions, width), -2, dtype=np.int64)
        seg = arrays.segment_ids(feeds.offsets)
        padded[seg, arrays.positions(feeds.offsets)] = feeds.pins
        seen = np.zeros((n_sessions, width), dtype=np.int64)
        saved = np.zeros((n_sessions, width), dtype=bool)
        hidden = np.zeros((n_sessions, width), dtype=bool)
        step = max(1, COMPARE_BUDGET // max(1, width * SEEN_MEMORY))
        for lo in range(0, n_sessions, step):
            part = slice(lo, lo + step)
            users, feed = feeds.users[part], padded[part, :, None]
            seen[part] = (feed == st.seen[users][:, None, :]).sum(axis=2)
            acted = st.acted[users][:, None, :]
            saved[part] = (feed * 2 == acted).any(axis=2)
            hidden[part] = (feed * 2 + 1 == acted).any(axis=2)
        valid = np.arange(width) < lengths[:, None]
        return seen[valid], saved[valid], hidden[valid]

    def _play(self, feeds: Feeds, rng: np.random.Generator) -> EventColumns:
        """One round: users are unique, so the memory updates cannot collide."""
        if not len(feeds) or not len(feeds.pins):
            return EventColumns.empty()
        b = self.b
        chances = self._chances(feeds)
        n = len(feeds.pins)
        # Row i holds position i's draws whatever the feed length: two arms of an experiment
        # given the same generator draw the same numbers for the same slot.
        draw = rng.random((n, 6)).T
        closeup = draw[0] < chances.closeup
        save = closeup & (draw[1] < chances.save)
        click = closeup & (draw[2] < chances.click)
        hide = ~closeup & (draw[3] < chances.examine * chances.hide)
        hazard = b.stop_rate * np.where(closeup, b.stop_after_closeup, 1.0)
        hazard *= np.where(hide, b.stop_after_hide, 1.0)
        stops = arrays.first_true(draw[5] < hazard, feeds.offsets)
        viewed_count = np.minimum(stops + 1, np.diff(feeds.offsets))
        seg = arrays.segment_ids(feeds.offsets)
        pos = arrays.positions(feeds.offsets)
        viewed = pos < viewed_count[seg]
        timing = self._timing(feeds, chances, closeup, click, rng)
        users, pins = feeds.users[seg], feeds.pins
        parts = [
            EventColumns.build(IMPRESSION, timing.shown, users, pins, pos, feeds.sources,
                               feeds.sessions[seg]).take(viewed),
            EventColumns.build(CLOSEUP, timing.action, users, pins, timing.duration)
            .take(viewed & closeup),
            EventColumns.build(CLICK, timing.action + timing.duration, users, pins)
            .take(viewed & click),
            self._saves(users, pins, timing, viewed & save),
            EventColumns.build(HIDE, timing.action, users, pins, 0,
                               self._hide_reasons(chances, pins)).take(viewed & hide),
            self._follows(users, pins, seg, timing, viewed & save, draw[4]),
        ]  # fmt: skip
        self._remember(feeds, seg, viewed, save & viewed, hide & viewed)
        return EventColumns.concat(parts)

    def _timing(
        self,
        feeds: Feeds,
        chances: Chances,
        closeup: np.ndarray,
        click: np.ndarray,
        rng: np.random.Generator,
    ) -> _Timing:
        """When each pin is shown and acted on. A pin takes its dwell time, plus the closeup
        and time away after a click; actions fall between a pin and the next, so one
        session's events are strictly ordered."""
        b, n = self.b, len(feeds.pins)
        dwell = (b.dwell_min_ms + b.dwell_ms * rng.standard_exponential(n)).astype(np.int64)
        quality = self.world.pin_quality[feeds.pins]
        duration = b.closeup_median_ms * (0.5 + quality) * np.exp(0.6 * rng.standard_normal(n))
        duration = np.maximum(duration, 1000).astype(np.int64)
        away = (b.click_away_ms * (0.2 + rng.standard_exponential(n))).astype(np.int64)
        step = dwell + closeup * (duration + 500) + click * away
        shown = feeds.start_ms[arrays.segment_ids(feeds.offsets)] + arrays.exclusive_cumsum(
            step, feeds.offsets
        )
        return _Timing(shown, shown + dwell // 2, duration)

    def _saves(
        self, users: np.ndarray, pins: np.ndarray, timing: _Timing, saved: np.ndarray
    ) -> EventColumns:
        at = timing.action[saved] + timing.duration[saved] // 2
        boards = self.world.save_board(users[saved], pins[saved], at)
        return EventColumns.build(SAVE, at, users[saved], pins[saved], boards)

    def _hide_reasons(self, chances: Chances, pins: np.ndarray) -> np.ndarray:
        """Why a pin would be hidden: a repeat is 'seen_it', a very poor pin 'offensive', a
        poor match 'not_interested', anything else 'irrelevant'."""
        return np.select(
            [chances.repeats > 0, self.world.pin_quality[pins] < 0.08, chances.match < 0.3],
            [REASON["seen_it"], REASON["offensive"], REASON["not_interested"]],
            REASON["irrelevant"],
        )

    def _follows(
        self,
        users: np.ndarray,
        pins: np.ndarray,
        seg: np.ndarray,
        timing: _Timing,
        saved: np.ndarray,
        draw: np.ndarray,
    ) -> EventColumns:
        """After a save, sometimes follow the pin's creator, else sometimes its board; never
        a target already followed, oneself or one's own board, nor twice in a session."""
        b, w = self.b, self.world
        creator_pick = saved & (draw < b.follow_creator_after_save)
        board_pick = saved & ~creator_pick & (
            draw < b.follow_creator_after_save + b.follow_board_after_save
        )  # fmt: skip
        idx = np.flatnonzero(creator_pick | board_pick)
        is_board = board_pick[idx]
        target = np.where(is_board, w.pin_board[pins[idx]], w.pin_creator[pins[idx]])
        owner = np.where(is_board, w.board_owner[target], target)
        u = users[idx]
        code = target * 2 + is_board
        ok = (owner != u) & ~self._follows_already(u, target, is_board, code)
        ok &= (
            arrays.occurrence(
                np.where(ok, seg[idx] * 2 * (w.users + w.boards + 1) + code, -1 - idx)
            )
            == 0
        )
        idx, u, target, is_board, code = idx[ok], u[ok], target[ok], is_board[ok], code[ok]
        at = timing.action[idx] + timing.duration[idx] * 4 // 5
        _ring_append(self.state.follows, self.state.follows_count, u, code)
        return EventColumns.build(FOLLOW, at, u, target, 0, is_board.astype(np.int64))

    def _follows_already(
        self, users: np.ndarray, target: np.ndarray, is_board: np.ndarray, code: np.ndarray
    ) -> np.ndarray:
        w = self.world
        static = np.where(is_board, users * max(w.boards, 1) + target, users * w.users + target)
        in_users = _contains(self._static_user_follows, static)
        in_boards = _contains(self._static_board_follows, static)
        dynamic = (self.state.follows[users] == code[:, None]).any(axis=1)
        return np.asarray(np.where(is_board, in_boards, in_users) | dynamic)

    def _remember(
        self,
        feeds: Feeds,
        seg: np.ndarray,
        viewed: np.ndarray,
        saved: np.ndarray,
        hidden: np.ndarray,
    ) -> None:
        st, w, b = self.state, self.world, self.b
        users = feeds.users
        decay = np.power(
            0.5, (feeds.start_ms - st.topic_at_ms[users]) / (3.6e6 * b.topic_half_life_hours)
        ).astype(np.float32)
        st.topic_load[users] *= decay[:, None]
        st.topic_at_ms[users] = feeds.start_ms
        np.add.at(st.topic_load, (users[seg[viewed]], w.pin_topic[feeds.pins[viewed]]), 1.0)
        _ring_append(st.seen, st.seen_count, users[seg[viewed]], feeds.pins[viewed])
        acted = saved | hidden
        _ring_append(
            st.acted, st.acted_count, users[seg[acted]], feeds.pins[acted] * 2 + hidden[acted]
        )


@dataclass(frozen=True, eq=False)
class _Timing:
    shown: np.ndarray  # impression time of each pin
    action: np.ndarray  # closeup or hide time
    duration: np.ndarray  # closeup length


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[at] == keys)
