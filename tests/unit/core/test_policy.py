"""Rules loading: defaults, the documented example, overrides and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.core.policy import DAY_MS, GapRules, Policy, PolicyError, load_policy

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "rules.example.toml"


def test_no_rules_text_gives_documented_defaults() -> None:
    p = load_policy(None).for_account(None, None)
    assert p == Policy()
    assert (p.window_days, p.current_days, p.baseline_days, p.onboarding_days) == (36, 7, 28, 90)
    assert (p.quiet_after_ms, p.quiet_missed_active_days, p.quiet_max_ms) == (7 * DAY_MS, 5.0, 28 * DAY_MS)
    assert (p.drop_ratio, p.drop_alpha, p.drop_window_days, p.drop_baseline_days) == (0.4, 0.01, 14, 21)
    assert (p.weights.activity, p.weights.stickiness, p.weights.sentiment) == (0.25, 0.20, 0.05)
    assert (p.good_min, p.average_min, p.max_tracked_ids) == (70, 40, 64)
    assert p.holiday_days == frozenset()


def test_example_rules_file_loads_and_its_base_equals_the_defaults() -> None:
    rules = load_policy(EXAMPLE.read_text())
    assert rules.for_account(None, None) == Policy()


def test_data_gap_rules_default_to_the_partition_defaults_and_are_read_from_their_section() -> None:
    assert load_policy(None).gaps == GapRules(True, 12.0, 20.0, 20.0, 10.0, 20)
    assert load_policy(EXAMPLE.read_text()).gaps == GapRules()
    rules = load_policy(
        "[data_gaps]\nenabled = false\nsilence_min = 30\nmax_gap_days = 3.5\nmin_accounts = 0\n"
    )
    assert rules.gaps == GapRules(False, 30.0, 20.0, 20.0, 3.5, 0)


def test_example_overrides_apply_by_segment_and_plan() -> None:
    rules = load_policy(EXAMPLE.read_text())
    enterprise = rules.for_account("enterprise", "pro")
    assert enterprise.quiet_after_ms == 3 * DAY_MS
    assert enterprise.drop_min_weekly_user_days == 20.0
    trial = rules.for_account("smb", "trial")
    assert trial.onboarding_days == 30
    assert trial.event_weights == {"support_ticket_opened": -2.0}
    assert trial.quiet_after_ms == 7 * DAY_MS


def test_later_matching_overrides_win_and_both_selectors_must_match() -> None:
    rules = load_policy("""
[alerts]
drop_ratio = 0.4
[event_weights]
export = 2
[[overrides]]
segment = "enterprise"
alerts = { drop_ratio = 0.3 }
event_weights = { login = 0.5 }
[[overrides]]
segment = "enterprise"
plan = "pro"
alerts = { drop_ratio = 0.2 }
""")
    assert rules.for_account("enterprise", "basic").drop_ratio == 0.3
    assert rules.for_account("enterprise", "pro").drop_ratio == 0.2
    assert rules.for_account("smb", "pro").drop_ratio == 0.4
    assert rules.for_account("enterprise", None).event_weights == {"export": 2.0, "login": 0.5}


def test_fractional_quiet_days_and_weights_are_loaded() -> None:
    p = load_policy("[alerts]\nquiet_after_days = 0.5\n[score.weights]\nactivity = 1\n").default
    assert p.quiet_after_ms == DAY_MS // 2
    assert p.weights.activity == 1.0


def test_renewal_raise_within_days_is_read_in_days_and_per_override() -> None:
    rules = load_policy(
        "[renewal]\nraise_within_days = 60\n"
        "[[overrides]]\nsegment = 'ent'\nrenewal = { raise_within_days = 1.5 }"
    )
    assert rules.for_account(None, None).renewal_raise_within_ms == 60 * DAY_MS
    assert rules.for_account("ent", None).renewal_raise_within_ms == 36 * 3_600_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[windw]\ndays = 3", "windw: unknown key"),  # misspelt section
        ("[alerts]\nquiet_after = 3", "alerts.quiet_after: unknown key"),  # misspelt key
        ("[score.weights]\nvibes = 1", "score.weights.vibes: unknown key"),  # unknown component
        ("[bands]\ngood_min = 'high'", "bands.good_min: must be a number"),  # string number
        ("[window]\ndays = 35.5", "window.days: must be an integer"),  # fractional day count
        ("[dedup]\nmax_tracked_ids = true", "dedup.max_tracked_ids: must be a number"),  # bool
        ("[event_weights]\nlogin = 'x'", "event_weights.login: must be a number"),  # bad weight
        ("alerts = 3", "alerts: must be a table"),  # scalar section
        ("[window]\ncurrent_days = 30", "must not exceed window.days"),  # windows overlap the kept days
        (
            "[alerts]\ndrop_min_baseline_weekly = 5",
            "alerts.drop_min_baseline_weekly: no longer a key: use alerts.drop_min_weekly_user_days",
        ),  # a key of an earlier rules file says what replaced it
        (
            "[[holidays]]\nname = 'x'\ndates = ['2026-13-01']",
            "holidays[0].dates[0]: '2026-13-01' is not a date",
        ),
        (
            "[[holidays]]\nname = 'x'\ndates = ['2026-02-01..2026-01-01']",
            "must run forward",
        ),  # reversed range
        ("[[holidays]]\nname = 'x'\ndates = []", "holidays[0].dates: required"),  # empty
        ("[[holidays]]\ndates = ['2026-01-01']", "holidays[0].name: required"),  # unnamed
        (
            "[[holidays]]\nname = 'x'\ndates = ['2026-01-01']\nregion = 'eu'",
            "holidays[0].region: unknown key",
        ),
        ("[bands]\naverage_min = 80", "average_min <= good_min"),  # inverted bands
        ("[alerts]\ndrop_ratio = 0.9", "drop_ratio <= drop_recover_ratio"),  # recovery below drop
        ("[[overrides]]\nalerts = { drop_ratio = 0.1 }", "overrides[0]: needs segment"),  # no selector
        ("[[overrides]]\nplan = 'pro'\n[overrides.alert]\nx = 1", "overrides[0].alert: unknown key"),  # typo
        ("[[overrides]]\nplan = 'pro'\nbands = { good_min = 10 }", "overrides[0]: bands"),  # invalid result
        ("[[overrides]]\nplan = 3", "overrides[0].plan: must be a string"),  # numeric selector
        ("overrides = 1", "overrides: must be an array"),  # not an array of tables
        ("[window", "invalid TOML"),  # syntax error
        ("[data_gaps]\nenabled = 'no'", "data_gaps.enabled: must be true or false"),  # not a boolean
        ("[data_gaps]\nsilence_min = 0", "data_gaps.silence_min: must be a number > 0"),  # never a gap
        ("[data_gaps]\nsilence = 5", "data_gaps.silence: unknown key"),  # misspelt
        ("[renewal]\nraise_within = 60", "renewal.raise_within: unknown key"),  # misspelt
        ("[renewal]\nraise_within_days = -1", "renewal.raise_within_days must be within 0..3660"),
        ("[data_gaps]\nmin_accounts = 2.5", "data_gaps.min_accounts: must be an integer >= 0"),  # fractional
        ("[[overrides]]\nplan = 'pro'\n[overrides.data_gaps]\nenabled = false", "overrides[0].data_gaps"),
    ],
)
def test_invalid_rules_raise_policy_error_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_policy(text)
    assert issubclass(PolicyError, ValueError)


def test_holidays_apply_to_every_account_or_to_their_segment_and_plan() -> None:
    rules = load_policy("""
[[holidays]]
name = "Christmas"
dates = ["2026-12-24..2026-12-26", 2027-01-01]
[[holidays]]
name = "Golden Week"
segment = "apac"
dates = ["2027-05-03"]
""")
    christmas = {20811, 20812, 20813, 20819}  # 2026-12-24..26 and 2027-01-01 as epoch days
    assert rules.for_account("emea", "pro").holiday_days == christmas
    assert rules.for_account("apac", None).holiday_days == christmas | {20941}
