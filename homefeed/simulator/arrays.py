"""Small vectorised helpers over ragged (CSR) data: sessions of pins, users' events."""

from __future__ import annotations

import numpy as np


def occurrence(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements (in array order) have the same key.

    ``occurrence([5, 3, 5, 5, 3]) == [0, 0, 1, 2, 1]``.
    """
    keys = np.asarray(keys)
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, len(keys)])
    rank = np.arange(len(keys)) - np.repeat(starts, lengths)
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = rank
    return out


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """The segment of each element of a CSR layout: ``[0, 2, 5] -> [0, 0, 1, 1, 1]``."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def positions(offsets: np.ndarray) -> np.ndarray:
    """Each element's index within its segment: ``[0, 2, 5] -> [0, 1, 0, 1, 2]``."""
    lengths = np.diff(offsets)
    return np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)


def exclusive_cumsum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per segment, the sum of the segment's earlier elements (0 for each segment's first)."""
    total = np.cumsum(values) - values
    return np.asarray(total - np.repeat(total[offsets[:-1]], np.diff(offsets)))


def first_true(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per segment, the index within it of its first True, or its length if none is True."""
    lengths = np.diff(offsets)
    key = np.where(flags, positions(offsets), np.repeat(lengths, lengths))
    out = lengths.copy()
    nonempty = lengths > 0
    if nonempty.any():
        out[nonempty] = np.minimum.reduceat(key, offsets[:-1][nonempty])
    return out


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
