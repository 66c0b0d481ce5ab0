"""The reference model: a logistic regression on 28-day counts per event name.

What a data scientist would fit first on the same history, so a user sees whether their rules rank
risk better than a fitted model: features are ``log1p`` of each account's events per name in the 28
days before the evaluation date (the most frequent names, the rest pooled) and their total,
standardised; the model is fitted on the rows of the earlier half of the evaluation dates and
tested on the later half, where the score is measured on the same rows. It needs scikit-learn
(``pip install 'churnwatch[backtest]'``); without it the reference is left out, with a note.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from streamer.backtest.metrics import auc, lift_at
from streamer.backtest.replay import ScoreRow

__all__ = ["ReferenceResult", "fit_reference"]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """The reference model against the score, on the same test rows."""

    fitted_on_dates: int
    tested_on_dates: int
    train_rows: int
    test_rows: int
    test_positives: int
    model_auc: float | None
    model_lift: float | None
    score_auc: float | None
    score_lift: float | None
    note: str = ""


def _features(row: ScoreRow) -> list[float]:
    return [math.log1p(c) for c in row.counts] + [math.log1p(sum(row.counts))]


def fit_reference(rows: Sequence[ScoreRow], dates: Sequence[int], horizon_days: int) -> ReferenceResult:
    """Fit on the earlier half of ``dates``, test on the later half; rows need a complete horizon."""
    horizon = horizon_days * DAY_MS

    def label(row: ScoreRow) -> bool:
        return row.next_cancel_ms is not None and row.next_cancel_ms <= row.at_ms + horizon

    usable = sorted(dates)
    half = len(usable) // 2
    train_dates, test_dates = set(usable[:half]), set(usable[half:])
    train = [r for r in rows if r.at_ms in train_dates]
    test = [r for r in rows if r.at_ms in test_dates]
    y_train, y_test = [label(r) for r in train], [label(r) for r in test]
    score_risk = [100.0 - r.score for r in test]
    base = ReferenceResult(
        fitted_on_dates=len(train_dates),
        tested_on_dates=len(test_dates),
        train_rows=len(train),
        test_rows=len(test),
        test_positives=sum(y_test),
        model_auc=None,
        model_lift=None,
        score_auc=auc(score_risk, y_test),
        score_lift=lift_at(score_risk, y_test),
    )
    if len(set(y_train)) < 2 or len(set(y_test)) < 2:
        return dataclasses.replace(
            base, note="not enough cancellations in one half of the dates to fit and test"
        )
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return dataclasses.replace(
            base, note="scikit-learn is not installed: pip install 'churnwatch[backtest]'"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit([_features(r) for r in train], y_train)
    risk = [float(p) for p in model.predict_proba([_features(r) for r in test])[:, 1]]
    return dataclasses.replace(base, model_auc=auc(risk, y_test), model_lift=lift_at(risk, y_test))
