"""The drift report: each feature of a window of live traffic against the reference, and a
verdict for the whole.

Numeric features: the two-sample Kolmogorov-Smirnov test (statistic and asymptotic p-value equal
to `scipy.stats.ks_2samp(method="asymp")`), PSI on the reference's deciles and the Wasserstein
distance in reference standard deviations. Categorical features: the chi-squared test of
homogeneity and the Jensen-Shannon distance (base 2). The p-values of the input features are
Holm-adjusted (the chance that any feature of a stable stream is flagged stays at the
significance); the prediction is tested on its own.

A feature drifts when its adjusted p-value is below the significance *and* the shift is large
enough to matter (Wasserstein >= 0.1 standard deviations, Jensen-Shannon >= 0.1, Evidently's
defaults): with a million rows any shift is significant, and with a small reference sample a
stable stream can stay a little off it for ever. Below `min_samples` values the answer is "not
enough data", never a guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ._profile import (
    CategoricalReference,
    CategoricalSummary,
    FeatureReference,
    NumericReference,
    NumericSummary,
    ReferenceProfile,
    WindowSummary,
)

__all__ = [
    "MIN_REFERENCE_ROWS",
    "DriftReport",
    "DriftSettings",
    "FeatureDrift",
    "Histogram",
    "Status",
    "Verdict",
    "drift_report",
    "holm",
]

MIN_REFERENCE_ROWS = 20
"""A feature with fewer reference values than this is not tested."""
PSI_FLOOR = 1e-4
"""Share that stands in for an empty bin in PSI (whose logarithm would be infinite)."""
OTHER = "(other)"
UNSEEN = "(unseen)"

Status = Literal["drift", "no drift", "not enough data", "not tested"]
Verdict = Literal["drift", "no drift", "not enough data"]


class DriftSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    significance: float = Field(0.05, gt=0, lt=1)
    """Chance that a window of a stable stream is flagged (any feature, after Holm)."""
    min_samples: int = Field(200, ge=1)
    min_wasserstein: float = Field(0.1, ge=0)
    """Smallest numeric shift that counts, in reference standard deviations."""
    min_jensen_shannon: float = Field(0.1, ge=0, le=1)
    """Smallest categorical shift that counts (Jensen-Shannon distance, base 2)."""
    psi_moderate: float = 0.1
    psi_major: float = 0.25
    """A drifted feature's PSI from here makes its alert critical."""
    min_missing_increase: float = Field(0.05, gt=0, le=1)
    """Smallest rise in a feature's share of null or non-finite values that counts."""
    drift_share: float = Field(0.5, gt=0, le=1)
    """Share of features (weighted by importance) drifting that makes the dataset drift."""
    psi_bins: int = Field(10, ge=2)
    histogram_bins: int = Field(20, ge=2)


class Histogram(BaseModel):
    """Reference and current shares per bin, for drawing: numeric bins have `edges` (reference
    values; values outside them fall in the first or last bin), categorical ones `categories`."""

    edges: list[float] | None = None
    categories: list[str] | None = None
    reference: list[float]
    current: list[float]


class FeatureDrift(BaseModel):
    feature: str
    kind: Literal["numeric", "categorical"]
    status: Status
    drifted: bool
    confirmed: bool | None = None
    """Whether the preceding window drifted too (monitoring); None when not asked (offline)."""
    rows: int
    """Values tested (not null, finite)."""
    missing: int
    reference_rows: int
    test: Literal["ks", "chi2"]
    statistic: float | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    """Holm-adjusted across the input features; None for the prediction."""
    psi: float | None = None
    psi_band: Literal["none", "moderate", "major"] | None = None
    wasserstein: float | None = None
    """In reference standard deviations."""
    jensen_shannon: float | None = None
    importance: float | None = None
    missing_share: float | None = None
    """Share of the window's values that were null or non-finite."""
    reference_missing_share: float | None = None
    missing_p_value: float | None = None
    """Fisher's exact test (one-sided) that nulls became more frequent than in the reference."""
    missing_rose: bool = False
    unseen: int = 0
    unseen_names: list[str] = Field(default_factory=list)
    histogram: Histogram | None = None
    note: str | None = None

    @property
    def counts(self) -> bool:
        """Whether it counts as drifting: drifted, and confirmed unless not asked."""
        return self.drifted and self.confirmed is not False


class DriftReport(BaseModel):
    verdict: Verdict
    rows: int
    reference_rows: int
    tested: int
    """Input features tested (enough values on both sides)."""
    drifted_features: list[str]
    share: float
    weighted_share: float
    """Share of the tested features' importance that drifts (the plain share without
    importances)."""
    weighted_by_importance: bool = False
    features: list[FeatureDrift]
    prediction: FeatureDrift | None = None
    settings: DriftSettings
    window_start: datetime | None = None
    window_end: datetime | None = None
    notes: list[str] = Field(default_factory=list)

    def feature(self, name: str) -> FeatureDrift:
        for feature in self.features:
            if feature.feature == name:
                return feature
        if self.prediction is not None and self.prediction.feature == name:
            return self.prediction
        raise KeyError(name)


def drift_report(
    profile: ReferenceProfile,
    window: WindowSummary,
    settings: DriftSettings | None = None,
    *,
    confirm_with: DriftReport | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> DriftReport:
    """The report of `window` against `profile`. With `confirm_with` (the report of the
    preceding window), a feature counts only if it drifted there too."""
    settings = settings or DriftSettings()
    notes = list(profile.notes)
    results = {
        name: _feature(name, reference, window.features[name], settings)
        for name, reference in profile.features.items()
    }
    inputs = [results[name] for name in profile.features if name != profile.prediction]
    distributions = [feature for feature in inputs if feature.p_value is not None]
    adjusted_p_values = holm([f.p_value or 0.0 for f in distributions])
    for feature, adjusted in zip(distributions, adjusted_p_values, strict=True):
        feature.adjusted_p_value = adjusted
        _decide(feature, adjusted, settings)
    for feature in inputs:
        _decide_missing(feature, settings)
    tested = [f for f in inputs if f.p_value is not None or f.missing_p_value is not None]
    prediction = results.get(profile.prediction) if profile.prediction else None
    if prediction is not None and prediction.p_value is not None:
        _decide(prediction, prediction.p_value, settings)
    for feature in inputs:
        feature.importance = (profile.importances or {}).get(feature.feature)
    if confirm_with is not None:
        _confirm([*inputs, *([prediction] if prediction else [])], confirm_with)
    if profile.rows < settings.min_samples:
        notes.append(
            f"the reference sample has only {profile.rows} rows (fewer than min_samples "
            f"{settings.min_samples}): only large shifts can be detected"
        )
    drifted = [feature for feature in tested if feature.counts]
    share = len(drifted) / len(tested) if tested else 0.0
    weighted = _weighted_share(tested, drifted, profile.importances) if tested else 0.0
    if window.rows < settings.min_samples:
        verdict: Verdict = "not enough data"
        notes.append(
            f"{window.rows} rows in the window, fewer than min_samples {settings.min_samples}"
        )
    elif weighted >= settings.drift_share or (prediction is not None and prediction.counts):
        verdict = "drift"
    else:
        verdict = "no drift"
    return DriftReport(
        verdict=verdict,
        rows=window.rows,
        reference_rows=profile.rows,
        tested=len(tested),
        drifted_features=[feature.feature for feature in drifted],
        share=share,
        weighted_share=weighted,
        weighted_by_importance=bool(profile.importances),
        features=inputs,
        prediction=prediction,
        settings=settings,
        window_start=window_start,
        window_end=window_end,
        notes=notes,
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, at most 1), in the given order."""
    count = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(count)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return [float(value) for value in adjusted]


def _decide(feature: FeatureDrift, p_value: float, settings: DriftSettings) -> None:
    if feature.kind == "numeric":
        large, measure, floor = feature.wasserstein, "Wasserstein", settings.min_wasserstein
    else:
        large, measure = feature.jensen_shannon, "Jensen-Shannon"
        floor = settings.min_jensen_shannon
    significant = p_value < settings.significance
    feature.drifted = significant and (large or 0.0) >= floor
    feature.status = "drift" if feature.drifted else "no drift"
    if significant and not feature.drifted:
        _note(feature, f"significant, but the shift is small ({measure} {large:.3f} < {floor})")


def _decide_missing(feature: FeatureDrift, settings: DriftSettings) -> None:
    """A feature whose values turned null (a broken upstream join, a renamed field) drifts,
    even with too few values left to test their distribution."""
    if feature.missing_p_value is None or feature.missing_share is None:
        return
    before = feature.reference_missing_share or 0.0
    rise = feature.missing_share - before
    if feature.missing_p_value >= settings.significance or rise < settings.min_missing_increase:
        return
    feature.missing_rose = feature.drifted = True
    feature.status = "drift"
    _note(
        feature, f"null or non-finite values rose from {before:.1%} to {feature.missing_share:.1%}"
    )


def _confirm(features: list[FeatureDrift], preceding: DriftReport) -> None:
    for feature in features:
        if not feature.drifted:
            continue
        try:
            before = preceding.feature(feature.feature)
        except KeyError:
            before = None
        feature.confirmed = before is not None and before.drifted
        if not feature.confirmed:
            why = (
                "had not enough data"
                if before is None or before.status == "not enough data"
                else "did not drift"
            )
            _note(feature, f"drifted in this window only (the preceding window {why})")


def _note(feature: FeatureDrift, note: str) -> None:
    feature.note = note if feature.note is None else f"{feature.note}; {note}"


def _weighted_share(
    tested: list[FeatureDrift], drifted: list[FeatureDrift], importances: dict[str, float] | None
) -> float:
    weights = {f.feature: max((importances or {}).get(f.feature, 0.0), 0.0) for f in tested}
    total = sum(weights.values())
    if total <= 0:
        return len(drifted) / len(tested)
    return sum(weights[f.feature] for f in drifted) / total


# -- one feature ------------------------------------------------------------------------------


def _feature(
    name: str,
    reference: FeatureReference,
    current: NumericSummary | CategoricalSummary,
    settings: DriftSettings,
) -> FeatureDrift:
    numeric = isinstance(reference, NumericReference)
    result = FeatureDrift(
        feature=name,
        kind="numeric" if numeric else "categorical",
        status="not tested",
        drifted=False,
        rows=current.rows,
        missing=current.missing,
        reference_rows=reference.summary.rows,
        test="ks" if numeric else "chi2",
    )
    if reference.summary.rows < MIN_REFERENCE_ROWS:
        result.note = (
            f"the reference holds {reference.summary.rows} values of it (null or non-finite "
            f"otherwise), fewer than {MIN_REFERENCE_ROWS}: not tested"
        )
        return result
    _missing_share(result, reference, current, settings)
    if current.rows < settings.min_samples:
        result.status = "not enough data"
        nulls = f" ({current.missing} null or non-finite)" if current.missing else ""
        result.note = f"{current.rows} values{nulls}, fewer than min_samples {settings.min_samples}"
        return result
    if isinstance(reference, NumericReference) and isinstance(current, NumericSummary):
        _numeric(result, reference, current, settings)
    elif isinstance(reference, CategoricalReference) and isinstance(current, CategoricalSummary):
        _categorical(result, reference, current, settings)
    result.status = "no drift"
    return result


def _missing_share(
    result: FeatureDrift,
    reference: FeatureReference,
    current: NumericSummary | CategoricalSummary,
    settings: DriftSettings,
) -> None:
    from scipy.stats import fisher_exact

    total = current.rows + current.missing
    if total < settings.min_samples:
        return
    ref_values, ref_missing = reference.summary.rows, reference.summary.missing
    result.missing_share = current.missing / total
    result.reference_missing_share = ref_missing / (ref_values + ref_missing)
    if current.missing == 0:
        result.missing_p_value = 1.0
        return
    table = [[current.missing, current.rows], [ref_missing, ref_values]]
    result.missing_p_value = float(fisher_exact(table, alternative="greater").pvalue)


def _numeric(
    result: FeatureDrift,
    reference: NumericReference,
    current: NumericSummary,
    settings: DriftSettings,
) -> None:
    from scipy.stats import kstwo

    mine, theirs = reference.summary.counts, current.counts
    n_ref, n_cur = int(mine.sum()), int(theirs.sum())
    ref_cdf = np.cumsum(mine) / n_ref
    cur_cdf = np.cumsum(theirs) / n_cur
    statistic = float(np.max(np.abs(ref_cdf - cur_cdf)))
    larger, smaller = max(n_ref, n_cur), min(n_ref, n_cur)
    effective = round(larger * smaller / (larger + smaller))
    result.statistic = statistic
    result.p_value = float(np.clip(kstwo.sf(statistic, effective), 0.0, 1.0))
    distance = _wasserstein(reference, current, ref_cdf, cur_cdf)
    scale = reference.std if reference.std > 0 else max(abs(reference.mean), 1.0)
    if reference.std == 0:
        result.note = "the reference is constant: Wasserstein is relative to its value"
    result.wasserstein = distance / scale
    starts = _decile_starts(reference, settings.psi_bins)
    result.psi = _psi(
        np.add.reduceat(mine, starts) / n_ref, np.add.reduceat(theirs, starts) / n_cur
    )
    result.psi_band = _band(result.psi, settings)
    result.histogram = _numeric_histogram(reference, current, settings.histogram_bins)


def _wasserstein(
    reference: NumericReference, current: NumericSummary, ref_cdf: np.ndarray, cur_cdf: np.ndarray
) -> float:
    """The area between the two CDFs. Between neighbouring reference values the reference's is
    flat and the current one rises at its values, whose sum the summary keeps."""
    grid, counts, sums = reference.grid - reference.mean, current.counts, current.sums
    n = counts.sum()
    below = (counts[0] * grid[0] - sums[0]) / n
    above = (sums[-1] - counts[-1] * grid[-1]) / n
    if len(grid) == 1:
        return float(below + above)
    widths = np.diff(grid)
    between = slice(2, len(counts) - 1, 2)  # values strictly inside each gap
    at_left = slice(1, len(counts) - 2, 2)  # the CDFs at the gap's left reference value
    rise = (counts[between] * grid[1:] - sums[between]) / n
    inner = np.abs((cur_cdf[at_left] - ref_cdf[at_left]) * widths + rise)
    return float(below + above + inner.sum())


def _decile_starts(reference: NumericReference, bins: int) -> np.ndarray:
    """First slot of each PSI bin: bins start at the reference's quantiles (reference values)."""
    if len(reference.grid) == 1:
        return np.array([0, 1, 2])  # below, at and above the constant
    at_grid = np.cumsum(reference.summary.counts[1::2])
    targets = np.arange(1, bins) / bins * at_grid[-1]
    first = np.searchsorted(at_grid, targets, "left") + 1
    return np.unique(np.concatenate(([0], 2 * np.minimum(first, len(reference.grid) - 1))))


def _numeric_histogram(
    reference: NumericReference, current: NumericSummary, bins: int
) -> Histogram:
    grid = reference.grid
    targets = np.linspace(grid[0], grid[-1], bins + 1)[1:-1]
    inner = np.unique(np.searchsorted(grid, targets, "left"))
    inner = inner[(inner > 0) & (inner < len(grid))]
    starts = np.concatenate(([0], 2 * inner))
    edges = [float(grid[0]), *(float(grid[i]) for i in inner), float(grid[-1])]
    return Histogram(
        edges=edges,
        reference=_shares(np.add.reduceat(reference.summary.counts, starts)),
        current=_shares(np.add.reduceat(current.counts, starts)),
    )


def _categorical(
    result: FeatureDrift,
    reference: CategoricalReference,
    current: CategoricalSummary,
    settings: DriftSettings,
) -> None:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2

    mine = np.append(reference.summary.counts, 0).astype(float)
    theirs = np.append(current.counts, current.unseen).astype(float)
    kept = (mine + theirs) > 0
    table = np.vstack([mine[kept], theirs[kept]])
    if table.shape[1] < 2:
        result.statistic, result.p_value = 0.0, 1.0
    else:
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
        statistic = float(((table - expected) ** 2 / expected).sum())
        result.statistic = statistic
        result.p_value = float(chi2.sf(statistic, table.shape[1] - 1))
    ref_shares, cur_shares = mine / mine.sum(), theirs / theirs.sum()
    result.jensen_shannon = float(jensenshannon(ref_shares, cur_shares, base=2))
    result.psi = _psi(ref_shares, cur_shares)
    result.psi_band = _band(result.psi, settings)
    result.unseen = current.unseen
    result.unseen_names = [name for name, _ in current.unseen_names.most_common()]
    if current.unseen:
        named = ", ".join(repr(name) for name in result.unseen_names[:5])
        result.note = f"{current.unseen} values of categories the reference lacks ({named})"
    result.histogram = _categorical_histogram(reference, current, settings.histogram_bins)


def _categorical_histogram(
    reference: CategoricalReference, current: CategoricalSummary, bins: int
) -> Histogram:
    shown = min(len(reference.categories), bins)
    names = list(reference.categories[:shown])
    mine = list(reference.summary.counts[:shown])
    theirs = list(current.counts[:shown])
    if len(reference.categories) > shown:
        names.append(OTHER)
        mine.append(reference.summary.counts[shown:].sum())
        theirs.append(current.counts[shown:].sum())
    if current.unseen:
        names.append(UNSEEN)
        mine.append(0)
        theirs.append(current.unseen)
    return Histogram(
        categories=names,
        reference=_shares(np.array(mine)),
        current=_shares(np.array(theirs)),
    )


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    mine = np.clip(reference, PSI_FLOOR, None)
    theirs = np.clip(current, PSI_FLOOR, None)
    return float(np.sum((theirs - mine) * np.log(theirs / mine)))


def _band(psi: float, settings: DriftSettings) -> Literal["none", "moderate", "major"]:
    if psi >= settings.psi_major:
        return "major"
    return "moderate" if psi >= settings.psi_moderate else "none"


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(value / total) if total else 0.0 for value in counts]
