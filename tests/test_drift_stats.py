"""The drift statistics against scipy and against arithmetic written out by hand, their error rates
on seeded stable and shifted data, odd inputs, and `compare_files` on real CSV and Parquet files."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2, ks_2samp, wasserstein_distance

from mlinfra.errors import ValidationError
from mlinfra.monitoring import (
    DriftReport,
    DriftSettings,
    FeatureDrift,
    ReferenceProfile,
    compare_files,
    drift_report,
)
from mlinfra.monitoring._profile import CategoricalSummary, NumericSummary
from mlinfra.monitoring._report import holm

ANY_SIZE = DriftSettings(min_samples=1)
SIGNIFICANCE = DriftSettings().significance


def one_feature(
    reference: np.ndarray, current: np.ndarray, drift_settings: DriftSettings = ANY_SIZE
) -> FeatureDrift:
    profile = ReferenceProfile.build(pd.DataFrame({"x": reference}))
    window = profile.summarise(pd.DataFrame({"x": current}))
    return drift_report(profile, window, drift_settings).feature("x")


def categorical(reference: list[str], current: list[str], min_samples: int = 1) -> FeatureDrift:
    profile = ReferenceProfile.build(pd.DataFrame({"c": reference}))
    window = profile.summarise(pd.DataFrame({"c": current}))
    return drift_report(profile, window, DriftSettings(min_samples=min_samples)).feature("c")


def traffic(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """Four numeric features of different shapes and one categorical; `shift` moves `skewed` by
    that many of its standard deviations."""
    skewed = rng.gamma(2.0, 1.0, rows)  # standard deviation sqrt(2)
    return pd.DataFrame(
        {
            "normal": rng.normal(10.0, 2.0, rows),
            "skewed": skewed + shift * math.sqrt(2.0),
            "counts": rng.poisson(3.0, rows).astype(float),  # integer-valued: ties everywhere
            "uniform": rng.uniform(-1.0, 1.0, rows),
            "colour": rng.choice(["red", "green", "blue", "grey"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def flagged(report: DriftReport) -> list[str]:
    return [feature.feature for feature in report.features if feature.drifted]


# -- Kolmogorov-Smirnov against scipy ---------------------------------------------------------


def assert_ks_matches_scipy(reference: np.ndarray, current: np.ndarray) -> None:
    result = one_feature(reference, current)
    expected = ks_2samp(reference, current, method="asymp")
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12, abs=0)
    assert result.p_value == pytest.approx(float(expected.pvalue), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(
    ("case", "reference", "current"),
    [
        ("normal, unequal sizes", ("normal", 1000), ("normal", 37)),
        ("shifted", ("normal", 300), ("shifted", 2000)),
        ("integers: ties on both sides", ("integers", 500), ("integers", 400)),
        ("current far outside the reference", ("normal", 200), ("far", 150)),
        ("current partly outside", ("uniform", 100), ("wide", 100)),
        ("constant reference", ("constant", 50), ("integers", 80)),
        ("constant reference, current on it", ("constant", 50), ("constant", 60)),
        ("one current value", ("normal", 20), ("normal", 1)),
    ],
)
def test_ks_equals_scipy_asymptotic(case: str, reference: tuple, current: tuple) -> None:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    draw = {
        "normal": lambda n: rng.normal(size=n),
        "shifted": lambda n: rng.normal(0.3, 1.0, size=n),
        "integers": lambda n: rng.integers(0, 6, size=n).astype(float),
        "far": lambda n: rng.normal(50.0, 1.0, size=n),
        "uniform": lambda n: rng.uniform(0.0, 1.0, size=n),
        "wide": lambda n: rng.uniform(-0.5, 1.5, size=n),
        "constant": lambda n: np.full(n, 3.0),
    }
    assert_ks_matches_scipy(draw[reference[0]](reference[1]), draw[current[0]](current[1]))


VALUES = st.one_of(
    st.integers(-4, 4).map(float),  # many ties
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(
    reference=st.lists(VALUES, min_size=20, max_size=300),
    current=st.lists(VALUES, min_size=1, max_size=300),
    offset=st.sampled_from([0.0, 0.5, 2000.0]),  # 2000: every current value above the reference
)
def test_ks_equals_scipy_on_any_values(
    reference: list[float], current: list[float], offset: float
) -> None:
    assert_ks_matches_scipy(np.array(reference), np.array(current) + offset)


# -- Holm, PSI, Jensen-Shannon, chi-squared, Wasserstein by hand --------------------------------


def test_holm_by_hand() -> None:
    # sorted: 0.005 (4th) x 4 = 0.02; 0.01 (1st) x 3 = 0.03; 0.03 (3rd) x 2 = 0.06;
    # 0.04 (2nd) x 1 = 0.04, raised to the running maximum 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.5 x 2 = 1.0, capped at 1; 0.6 x 1 = 0.6, raised to 1.0
    assert holm([0.6, 0.5]) == [1.0, 1.0]
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


def test_psi_on_two_bins_by_hand() -> None:
    # reference 1..10 twice each: the median bin edge is 5, so the bins are <= 5 and > 5, each
    # holding half of the reference; the current sample puts 3/4 at or below 5
    reference = np.repeat(np.arange(1.0, 11.0), 2)
    current = np.array([1.0] * 100 + [5.0] * 50 + [5.5] * 10 + [9.0] * 40)
    result = one_feature(reference, current, DriftSettings(min_samples=1, psi_bins=2))
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert expected == pytest.approx(0.274653, abs=1e-6)
    assert result.psi == pytest.approx(expected, rel=1e-12)
    assert result.psi_band == "major"  # >= 0.25


def test_psi_on_deciles_with_empty_bins_by_hand() -> None:
    # reference 1..100: deciles 1-10, 11-20, ...; the current sample fills the lower five only,
    # 0.2 each, and an empty bin counts as a share of 1e-4
    reference = np.arange(1.0, 101.0)
    assert one_feature(reference, reference).psi == pytest.approx(0.0, abs=1e-15)
    current = np.repeat(np.arange(1.0, 51.0), 4)
    expected = 5 * (0.2 - 0.1) * math.log(0.2 / 0.1) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert expected == pytest.approx(3.796998, abs=1e-6)
    assert one_feature(reference, current).psi == pytest.approx(expected, rel=1e-12)


def test_jensen_shannon_base_2_by_hand() -> None:
    # reference shares p = (0.5, 0.5), current q = (0.9, 0.1), midpoint m = (0.7, 0.3)
    result = categorical(["a", "b"] * 50, ["a"] * 90 + ["b"] * 10)
    kl_p = 0.5 * math.log2(0.5 / 0.7) + 0.5 * math.log2(0.5 / 0.3)
    kl_q = 0.9 * math.log2(0.9 / 0.7) + 0.1 * math.log2(0.1 / 0.3)
    assert result.jensen_shannon == pytest.approx(math.sqrt((kl_p + kl_q) / 2), rel=1e-12)
    # an unseen category is a third share, zero in the reference: p = (0.5, 0.5, 0),
    # q = (0.5, 0.25, 0.25), m = (0.5, 0.375, 0.125)
    result = categorical(["a", "b"] * 50, ["a"] * 50 + ["b"] * 25 + ["new"] * 25)
    kl_p = 0.5 * math.log2(0.5 / 0.5) + 0.5 * math.log2(0.5 / 0.375)
    kl_q = 0.5 * math.log2(0.5 / 0.5) + 0.25 * math.log2(0.25 / 0.375)
    kl_q += 0.25 * math.log2(0.25 / 0.125)
    assert result.jensen_shannon == pytest.approx(math.sqrt((kl_p + kl_q) / 2), rel=1e-12)


def test_chi_squared_homogeneity_without_yates_by_hand() -> None:
    # table [[60, 40], [30, 70]]: row totals 100, 100; column totals 90, 110; of 200.
    # expected [[45, 55], [45, 55]]; statistic 2 * 15**2 / 45 + 2 * 15**2 / 55, 1 degree of
    # freedom (Yates' correction would use 14.5**2 instead)
    result = categorical(["a"] * 60 + ["b"] * 40, ["a"] * 30 + ["b"] * 70)
    statistic = 2 * 15**2 / 45 + 2 * 15**2 / 55
    assert statistic == pytest.approx(18.181818, abs=1e-6)
    assert result.test == "chi2"
    assert result.statistic == pytest.approx(statistic, rel=1e-12)
    assert result.p_value == pytest.approx(float(chi2.sf(statistic, 1)), rel=1e-12)


def test_chi_squared_counts_unseen_categories_as_a_column() -> None:
    # [[50, 50, 0], [40, 40, 20]]: totals 100, 100; 90, 90, 20; expected [[45, 45, 10]] twice:
    # 4 * 5**2 / 45 + 2 * 10**2 / 10, 2 degrees of freedom
    result = categorical(["a", "b"] * 50, ["a"] * 40 + ["b"] * 40 + ["x"] * 20)
    statistic = 4 * 5**2 / 45 + 2 * 10**2 / 10
    assert result.statistic == pytest.approx(statistic, rel=1e-12)
    assert result.p_value == pytest.approx(float(chi2.sf(statistic, 2)), rel=1e-12)


def test_wasserstein_is_exact_when_current_values_are_reference_values() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        reference = rng.normal(size=int(rng.integers(20, 500)))
        current = rng.choice(reference, size=int(rng.integers(1, 500)))
        expected = wasserstein_distance(reference, current) / reference.std()
        assert one_feature(reference, current).wasserstein == pytest.approx(expected, rel=1e-12)
    # integer data, partly outside the reference's range: outside it the distance is exact too
    reference = rng.integers(0, 5, 300).astype(float)
    current = rng.integers(-3, 9, 200).astype(float)
    expected = wasserstein_distance(reference, current) / reference.std()
    assert one_feature(reference, current).wasserstein == pytest.approx(expected, rel=1e-12)


def test_wasserstein_is_close_when_current_values_fall_between_reference_values() -> None:
    """Inside a gap of width w between neighbouring reference values that holds c of the n
    current values, the current CDF moves by c/n; when it crosses the reference CDF there, the
    report (which integrates the signed gap) can fall short by at most w * c / n."""
    rng = np.random.default_rng(8)
    for shift in [0.0, 0.0, 0.2, 1.0, 5.0]:
        reference = rng.normal(size=int(rng.integers(20, 1000)))
        current = rng.normal(shift, 1.0, size=int(rng.integers(1, 2000)))
        grid = np.unique(reference)
        right = np.searchsorted(grid, current, "right")
        inside = (right > 0) & (right < len(grid)) & ~np.isin(current, grid)
        widths = grid[right[inside]] - grid[right[inside] - 1]
        slack = widths.sum() / len(current) / reference.std()
        exact = wasserstein_distance(reference, current) / reference.std()
        reported = one_feature(reference, current).wasserstein
        assert reported is not None
        assert exact - slack - 1e-12 <= reported <= exact + 1e-12
    # large samples: the slack is small
    reference, current = rng.normal(size=10_000), rng.normal(size=10_000)
    exact = wasserstein_distance(reference, current) / reference.std()
    assert one_feature(reference, current).wasserstein == pytest.approx(exact, rel=0.02)


# -- windows add up ---------------------------------------------------------------------------


def test_summaries_of_two_parts_add_up_to_the_summary_of_the_whole() -> None:
    rng = np.random.default_rng(3)
    profile = ReferenceProfile.build(traffic(rng, 1000), categorical=["counts"])
    whole = traffic(rng, 3000)
    whole.loc[rng.random(3000) < 0.05, "normal"] = np.nan
    whole.loc[rng.random(3000) < 0.01, "uniform"] = np.inf
    whole.loc[rng.random(3000) < 0.03, "colour"] = rng.choice(["pink", "teal"], 1)[0]
    whole.loc[rng.random(3000) < 0.02, "colour"] = None
    whole.loc[5, "counts"] = 99.0  # unseen category of a numeric-coded categorical
    for cut in [1, 1234, 2999]:
        first = profile.summarise(whole.iloc[:cut], start=200.0)
        second = profile.summarise(whole.iloc[cut:], start=100.0)
        added, direct = first + second, profile.summarise(whole)
        assert added.rows == direct.rows == 3000 and added.start == 100.0
        for name, expected in direct.features.items():
            got = added.features[name]
            assert type(got) is type(expected) and got.missing == expected.missing
            np.testing.assert_array_equal(got.counts, expected.counts)
            if isinstance(got, NumericSummary) and isinstance(expected, NumericSummary):
                np.testing.assert_allclose(got.sums, expected.sums, rtol=1e-9, atol=1e-9)
            if isinstance(got, CategoricalSummary) and isinstance(expected, CategoricalSummary):
                assert (got.unseen, got.unseen_names) == (expected.unseen, expected.unseen_names)
    summed = profile.empty() + profile.summarise(whole)
    report = drift_report(profile, summed)
    assert report == drift_report(profile, profile.summarise(whole))


# -- error rates ------------------------------------------------------------------------------


def test_stable_windows_are_flagged_at_most_at_the_significance() -> None:
    """200 stable windows of 500 rows against each of five 1000-row references. The guarantee
    is an average over references: against one fixed reference the share depends on how far
    that sample happens to sit from the population (over 30 references it ranged from 0 to
    16%, mean 3%), so the share is asserted over the five together."""
    windows, shares = 200, []
    for seed in range(5):
        rng = np.random.default_rng(1000 + seed)
        profile = ReferenceProfile.build(traffic(rng, 1000))
        reports = [
            drift_report(profile, profile.summarise(traffic(rng, 500))) for _ in range(windows)
        ]
        assert all(report.verdict == "no drift" and report.tested == 5 for report in reports)
        shares.append(sum(bool(flagged(report)) for report in reports) / windows)
    assert sum(shares) / len(shares) <= SIGNIFICANCE


def test_holm_keeps_the_chance_of_any_significant_feature_at_the_significance() -> None:
    """Significance alone (no effect-size floor), a fresh reference each time: the share of
    windows with any adjusted p-value below 0.05 is binomial with p <= 0.05 (the tests are
    conservative on integer data), so it stays within three standard errors of 0.05."""
    rng = np.random.default_rng(12)
    windows = 300
    significant = 0
    for _ in range(windows):
        profile = ReferenceProfile.build(traffic(rng, 1000))
        report = drift_report(profile, profile.summarise(traffic(rng, 500)))
        significant += any(
            (feature.adjusted_p_value or 1.0) < SIGNIFICANCE for feature in report.features
        )
    bound = SIGNIFICANCE + 3 * math.sqrt(SIGNIFICANCE * (1 - SIGNIFICANCE) / windows)
    assert significant / windows <= bound


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_half_a_standard_deviation_shift_flags_that_feature_only(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    profile = ReferenceProfile.build(traffic(rng, 1000))
    report = drift_report(profile, profile.summarise(traffic(rng, 500, shift=0.5)))
    assert flagged(report) == ["skewed"]
    shifted = report.feature("skewed")
    assert shifted.status == "drift" and shifted.wasserstein == pytest.approx(0.5, abs=0.15)
    assert report.drifted_features == ["skewed"] and report.verdict == "no drift"  # 1 of 5


# -- odd inputs -------------------------------------------------------------------------------


def test_odd_inputs_are_reported_not_raised() -> None:
    rng = np.random.default_rng(5)
    reference = traffic(rng, 1000).assign(
        constant=7.0,
        never_set=np.nan,
        sometimes_inf=np.where(rng.random(1000) < 0.1, np.inf, rng.normal(size=1000)),
        goes_null=rng.normal(size=1000),
        dropped=rng.normal(size=1000),
    )
    profile = ReferenceProfile.build(reference)
    assert profile.notes == ("never_set: the reference holds no values (all null), not tested",)
    current = traffic(rng, 500).assign(
        constant=7.0,
        never_set=rng.normal(size=500),
        sometimes_inf=np.where(rng.random(500) < 0.2, -np.inf, rng.normal(size=500)),
        goes_null=None,
    )
    current.loc[:99, "colour"] = "violet"
    report = drift_report(profile, profile.summarise(current))

    constant = report.feature("constant")
    assert (constant.status, constant.statistic, constant.wasserstein) == ("no drift", 0.0, 0.0)
    assert "constant" in (constant.note or "")

    never_set = report.feature("never_set")
    assert never_set.status == "not tested" and never_set.reference_rows == 0
    assert "reference holds 0 values" in (never_set.note or "")

    infinite = report.feature("sometimes_inf")
    assert infinite.reference_rows == 1000 - reference["sometimes_inf"].isin([np.inf]).sum()
    assert infinite.missing == current["sometimes_inf"].isin([-np.inf]).sum()
    assert infinite.rows + infinite.missing == 500
    # non-finite values went from 10% to 20%: that alone is drift
    assert infinite.status == "drift" and infinite.missing_rose
    assert infinite.reference_missing_share == pytest.approx(0.1, abs=0.03)

    for name in ["goes_null", "dropped"]:  # all null, and not in the frame at all
        gone = report.feature(name)
        assert (gone.status, gone.rows, gone.missing) == ("drift", 0, 500)
        assert gone.drifted and gone.missing_rose and gone.missing_share == 1.0
        assert gone.note == (
            "0 values (500 null or non-finite), fewer than min_samples 200; "
            "null or non-finite values rose from 0.0% to 100.0%"
        )

    colour = report.feature("colour")
    assert colour.status == "drift" and colour.unseen == 100 and colour.unseen_names == ["violet"]
    assert colour.note == "100 values of categories the reference lacks ('violet')"
    assert colour.histogram is not None and colour.histogram.categories is not None
    assert colour.histogram.categories[-1] == "(unseen)"
    assert colour.histogram.current[-1] == pytest.approx(0.2)

    assert report.tested == 9 and report.notes == list(profile.notes)
    report.model_dump_json()  # every number serialisable


def test_shift_of_a_constant_feature_is_measured_against_its_value() -> None:
    result = one_feature(np.full(300, 4.0), np.full(300, 5.0), DriftSettings())
    assert result.status == "drift" and result.wasserstein == pytest.approx(0.25)


def test_small_references_are_tested_with_a_note_and_tiny_ones_not_at_all() -> None:
    rng = np.random.default_rng(6)
    small = ReferenceProfile.build(traffic(rng, 50))
    report = drift_report(small, small.summarise(traffic(rng, 500)))
    assert report.tested == 5
    assert report.notes == [
        "the reference sample has only 50 rows (fewer than min_samples 200): only large shifts "
        "can be detected"
    ]
    tiny = ReferenceProfile.build(traffic(rng, 19))
    report = drift_report(tiny, tiny.summarise(traffic(rng, 500)))
    assert report.tested == 0 and report.verdict == "no drift"
    assert all(feature.status == "not tested" for feature in report.features)
    assert "fewer than 20: not tested" in (report.features[0].note or "")


def test_empty_and_thin_windows_give_not_enough_data() -> None:
    rng = np.random.default_rng(9)
    profile = ReferenceProfile.build(traffic(rng, 1000))
    for window in [profile.empty(), profile.summarise(traffic(rng, 199, shift=5.0))]:
        report = drift_report(profile, window)
        assert report.verdict == "not enough data" and report.drifted_features == []
        assert {feature.status for feature in report.features} == {"not enough data"}
        assert report.notes[-1].endswith("rows in the window, fewer than min_samples 200")


# -- files ------------------------------------------------------------------------------------


def write_both(frame: pd.DataFrame, folder: Path, name: str) -> tuple[Path, Path]:
    csv, parquet = folder / f"{name}.csv", folder / f"{name}.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    return csv, parquet


def test_compare_files_gives_the_same_report_for_csv_and_parquet(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    reference = traffic(rng, 2000).assign(store=rng.integers(1, 6, 2000), only_here=1.0)
    current = traffic(rng, 3000, shift=0.5).assign(store=rng.integers(1, 7, 3000), extra="x")
    current.loc[rng.random(3000) < 0.1, "normal"] = np.nan
    reference_csv, reference_parquet = write_both(reference, tmp_path, "reference")
    current_csv, current_parquet = write_both(current, tmp_path, "current")

    from_csv = compare_files(reference_csv, current_csv, categorical=["store"])
    from_parquet = compare_files(reference_parquet, current_parquet, categorical=["store"])
    assert from_csv == from_parquet
    assert from_csv.drifted_features == ["normal", "skewed", "store"]  # normal: 10% nulls
    store = from_csv.feature("store")
    assert (store.kind, store.unseen, store.unseen_names) == (
        "categorical",
        (current["store"] == 6).sum(),
        ["6"],
    )
    assert from_csv.feature("normal").missing == current["normal"].isna().sum()
    assert from_csv.rows == 3000 and from_csv.reference_rows == 2000
    assert "not compared (in one file only): extra, only_here" in from_csv.notes


def test_a_rise_in_nulls_is_drift_and_a_steady_null_rate_is_not() -> None:
    """A feature whose values turn null (a broken join upstream) drifts even though what is
    left of it looks like the reference; the reference's own null rate raises nothing."""
    rng = np.random.default_rng(31)
    reference = traffic(rng, 1000)
    reference.loc[rng.random(1000) < 0.05, "uniform"] = np.nan  # 5% null already
    reference.loc[rng.random(1000) < 0.05, "colour"] = None
    profile = ReferenceProfile.build(reference)
    steady = []
    for _ in range(100):
        current = traffic(rng, 500)
        current.loc[rng.random(500) < 0.05, "uniform"] = np.nan
        current.loc[rng.random(500) < 0.05, "colour"] = None
        report = drift_report(profile, profile.summarise(current))
        steady.append(any(feature.missing_rose for feature in report.features))
    assert sum(steady) <= 5, "a steady null rate is not flagged (at most the significance)"

    broken = traffic(rng, 500)
    broken.loc[rng.random(500) < 0.3, "normal"] = np.nan
    broken.loc[rng.random(500) < 0.3, "colour"] = None
    report = drift_report(profile, profile.summarise(broken))
    assert [f.feature for f in report.features if f.missing_rose] == ["normal", "colour"]
    normal = report.feature("normal")
    assert normal.drifted and normal.wasserstein is not None and normal.wasserstein < 0.1
    assert normal.reference_missing_share == 0.0
    assert normal.missing_share == pytest.approx(0.3, abs=0.06)
    assert normal.missing_p_value is not None and normal.missing_p_value < 1e-10
    assert "null or non-finite values rose from 0.0% to" in (normal.note or "")
    assert report.drifted_features == ["normal", "colour"]


def test_csv_empty_cells_are_missing_values_not_a_category(tmp_path: Path) -> None:
    reference = pd.DataFrame({"colour": ["red", "blue"] * 300, "x": np.arange(600.0)})
    current = reference.copy()
    current.loc[::3, "colour"] = None  # written as empty cells
    reference_csv, _ = write_both(reference, tmp_path, "reference")
    current_csv, _ = write_both(current, tmp_path, "current")
    report = compare_files(reference_csv, current_csv, categorical=["colour"])
    colour = report.feature("colour")
    assert (colour.missing, colour.unseen, colour.unseen_names) == (200, 0, [])
    assert colour.missing_rose and report.drifted_features == ["colour"]


def test_compare_files_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    reference_csv, _ = write_both(traffic(rng, 100), tmp_path, "reference")
    other_csv, _ = write_both(pd.DataFrame({"unrelated": [1, 2, 3]}), tmp_path, "other")
    text = tmp_path / "reference.txt"
    text.write_text(reference_csv.read_text())

    with pytest.raises(ValidationError, match="no such file"):
        compare_files(reference_csv, tmp_path / "absent.csv")
    with pytest.raises(ValidationError, match="no such file"):
        compare_files(tmp_path / "absent.parquet", reference_csv)
    with pytest.raises(ValidationError, match=r"not a \.csv or \.parquet file"):
        compare_files(reference_csv, text)
    with pytest.raises(ValidationError, match="no column in common"):
        compare_files(reference_csv, other_csv)
    with pytest.raises(ValidationError, match="'missing' is not in both files"):
        compare_files(reference_csv, reference_csv, categorical=["missing"])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(ValidationError, match="cannot be read as parquet"):
        compare_files(reference_csv, broken)
