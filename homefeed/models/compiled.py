"""LightGBM trees compiled to native code (lleaves/LLVM) for scoring at serving time.

A first page scores ~1,000 candidates with every head. LightGBM's own predictor copies each
row into a sparse vector before walking the trees, which at this size costs ~10x the walk;
a compiled forest reads the float64 matrix directly and gives the same raw scores (the same
thresholds, missing-value and default-left rules: ``compile_head`` checks this on sample
rows before the compiled head is used). Compiling takes about a second per 50 trees, so the
machine code is cached by the model text's sha256 and a restart loads it in milliseconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

log = logging.getLogger(__name__)

RawScorer = Callable[[np.ndarray], np.ndarray]
CHECK_ROWS = 256  # rows scored by both predictors before a compiled head is trusted
TOLERANCE = 1e-9  # relative: both sum the same float64 leaf values, in a different order


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/homefeed/compiled`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "homefeed" / "compiled"


def compile_head(booster: lgb.Booster, cache_dir: Path | None = None) -> RawScorer | None:
    """A raw-score function equal to ``booster.predict(x, raw_score=True)``, or None.

    None (with a logged reason) when lleaves is missing, compiling fails, or the compiled
    forest disagrees with LightGBM on sample rows: the caller keeps LightGBM's predictor.
    """
    try:
        import lleaves
    except ImportError as e:
        log.warning("lleaves is not installed (%s): scoring with LightGBM's predictor", e)
        return None
    text = booster.model_to_string()
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    directory = cache_dir or default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        cache: Path | None = directory / f"{digest}.so"
    except OSError as e:  # a read-only home (containers): compile at every start instead
        log.warning("no compiled-model cache at %s (%s): compiling without one", directory, e)
        cache = None
    try:
        model = _compiled_model(lleaves, text, cache)
    except Exception as e:  # a compiler error must not take serving down: LightGBM still works
        log.warning("compiling a LightGBM head failed (%r): scoring with LightGBM", e)
        return None
    features = booster.num_feature()

    def scorer(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != features:
            raise ValueError(f"x has shape {x.shape}; the head expects {features} features")
        return np.asarray(model.predict(x, n_jobs=1), dtype=np.float64)

    return scorer if _agrees(booster, scorer, features) else None


def _compiled_model(lleaves: Any, text: str, cache: Path | None) -> Any:
    """The compiled forest, from ``cache`` when present (written atomically when not)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.txt"
        model_file.write_text(text)
        model = lleaves.Model(model_file=str(model_file))
        if cache is None:
            model.compile(raw_score=True)
            return model
        if cache.exists():
            model.compile(cache=str(cache), raw_score=True)
            return model
        partial = Path(tmp) / cache.name
        model.compile(cache=str(partial), raw_score=True)
        os.replace(partial, cache)  # another process compiling the same model is harmless
        log.info("compiled a LightGBM head of %d trees to %s", model.num_trees(), cache)
        return model


def _agrees(booster: lgb.Booster, scorer: RawScorer, features: int) -> bool:
    """Both predictors on random rows with NaNs and extremes: the same raw scores?"""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 10.0, size=(CHECK_ROWS, features))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.05] = 0.0
    want = np.asarray(booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)
    got = scorer(x)
    if np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE):
        return True
    worst = float(np.max(np.abs(got - want)))
    log.warning("compiled head differs from LightGBM by up to %g: scoring with LightGBM", worst)
    return False
