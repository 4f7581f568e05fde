"""MovieLens ratings as homefeed events: real engagement through the same SDK and pipeline.

Mapping (documented in the README): a movie is a pin whose topics are its genres, created by
a catalogue user (id 0) on the catalogue board (id 0); each rater gets one board (id = user id);
a rating >= 4 is a save of that movie to the rater's board, a lower rating a click. Times are
the ratings' own timestamps; catalogue and board events are dated at the first rating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homefeed.events.sdk import EventLogger

CATALOGUE_USER = 0
CATALOGUE_BOARD = 0
CLIENT = {"platform": "import", "app_version": "movielens"}


class MovieLensFormatError(ValueError):
    """A line of a MovieLens file does not have the expected fields."""


@dataclass
class ImportReport:
    ratings: int = 0
    saves: int = 0
    clicks: int = 0
    movies: int = 0
    users: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rating:
    user_id: int
    item_id: int
    rating: int
    timestamp: int


def read_ratings(path: Path) -> Iterator[Rating]:
    """u.data: user id, item id, rating, unix seconds, tab separated."""
    with path.open(encoding="latin-1") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 4:
                raise MovieLensFormatError(
                    f"{path}:{number}: expected 4 tab-separated fields, got {len(parts)}"
                )
            try:
                user, item, rating, ts = (int(p) for p in parts)
            except ValueError:
                raise MovieLensFormatError(
                    f"{path}:{number}: fields must be integers: {line.strip()!r}"
                ) from None
            yield Rating(user, item, rating, ts)


def read_movies(path: Path, genres: list[str]) -> Iterator[tuple[int, str, list[str]]]:
    """u.item: id|title|release|video release|url|19 genre flags."""
    with path.open(encoding="latin-1") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("|")
            if len(parts) < 5 + len(genres):
                raise MovieLensFormatError(
                    f"{path}:{number}: expected {5 + len(genres)} '|' fields"
                )
            flags = parts[5 : 5 + len(genres)]
            yield (
                int(parts[0]),
                parts[1],
                [g for g, flag in zip(genres, flags, strict=True) if flag == "1"],
            )


def read_genres(path: Path) -> list[str]:
    pairs = [
        line.strip().split("|")
        for line in path.read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    return [
        name.lower().replace("'", "").replace(" ", "_")
        for name, _ in sorted(pairs, key=lambda p: int(p[1]))
    ]


def _time(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _event(event_type: str, user_id: int, ts: int, **fields: Any) -> dict[str, Any]:
    # Deterministic ids: importing the same files twice produces the same events.
    subject = fields.get("pin_id", fields.get("board_id"))
    return {
        "event_type": event_type,
        "user_id": user_id,
        "event_time": _time(ts),
        "surface": "other",
        "client": CLIENT,
        "event_id": f"ml-{event_type}-{user_id}-{subject}-{ts}",
        **fields,
    }


def import_movielens(
    directory: Path, logger: EventLogger, advance: Callable[[int], None] | None = None
) -> ImportReport:
    """Log the catalogue, the boards and every rating of a MovieLens directory (u.data etc.)."""
    ratings_file = directory / "u.data"
    if not ratings_file.is_file():
        raise FileNotFoundError(f"{ratings_file} not found: expected a MovieLens 100K directory")
    report = ImportReport()
    first_ts = min(r.timestamp for r in read_ratings(ratings_file))
    log = _logging_into(logger, report)
    item_file, genre_file = directory / "u.item", directory / "u.genre"
    log(
        _event(
            "board_create",
            CATALOGUE_USER,
            first_ts,
            board_id=CATALOGUE_BOARD,
            name="MovieLens catalogue",
        )
    )
    if item_file.is_file() and genre_file.is_file():
        for item_id, title, topics in read_movies(item_file, read_genres(genre_file)):
            log(
                _event(
                    "pin_create",
                    CATALOGUE_USER,
                    first_ts,
                    pin_id=item_id,
                    board_id=CATALOGUE_BOARD,
                    title=title[:500],
                    topics=topics or ["unknown"],
                )
            )
            report.movies += 1
    users: set[int] = set()
    for r in read_ratings(ratings_file):
        if r.user_id not in users:
            users.add(r.user_id)
            log(
                _event(
                    "board_create", r.user_id, first_ts, board_id=r.user_id, name="Favourite movies"
                )
            )
        if r.rating >= 4:
            log(_event("save", r.user_id, r.timestamp, pin_id=r.item_id, board_id=r.user_id))
            report.saves += 1
        else:
            log(_event("click", r.user_id, r.timestamp, pin_id=r.item_id))
            report.clicks += 1
        report.ratings += 1
        if advance is not None:
            advance(1)
    report.users = len(users)
    logger.flush()
    return report


def _logging_into(logger: EventLogger, report: ImportReport) -> Callable[[dict[str, Any]], None]:
    def log(event: dict[str, Any]) -> None:
        rejection = logger.log(event)
        if rejection is not None:
            report.rejected += 1
            if len(report.problems) < 20:
                report.problems.append(str(rejection))

    return log
