"""Test portfolios: determinism, wire shapes, and that the history agrees with its truth file."""

from __future__ import annotations

import gzip
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import orjson
import pytest

from streamer.core.events import EventKind, UsageEvent, parse_event
from streamer.sim import load_truth
from streamer.sim.portfolio import Portfolio, generate_portfolio, main
from streamer.sim.truth import PortfolioParams, Truth, truth_from_dict, truth_to_json

REPO = Path(__file__).resolve().parents[3]
DAY_MS = 86_400_000
# Four months around a Christmas, with a high churn rate so that every archetype shows up in 60 accounts.
SMALL_B2B = PortfolioParams("b2b", accounts=60, months=4, start=date(2025, 11, 3), seed=3, churn_rate=1.2)
SMALL_CONSUMER = PortfolioParams("consumer", accounts=150, months=4, start=date(2025, 11, 3), seed=3)


@dataclass
class History:
    portfolio: Portfolio
    lines: list[str]
    events: list[UsageEvent]

    @property
    def truth(self) -> Truth:
        return self.portfolio.truth

    def by_account(self) -> dict[str, list[UsageEvent]]:
        out: dict[str, list[UsageEvent]] = defaultdict(list)
        for e in self.events:
            out[e.account_id].append(e)
        return out


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def history(params: PortfolioParams) -> History:
    portfolio = generate_portfolio(params)
    lines = list(portfolio.lines())
    return History(portfolio, lines, [parse_event(line) for line in lines])


@pytest.fixture(scope="module")
def b2b() -> History:
    return history(SMALL_B2B)


@pytest.fixture(scope="module")
def consumer() -> History:
    return history(SMALL_CONSUMER)


@pytest.fixture(params=["b2b", "consumer"])
def any_shape(request: pytest.FixtureRequest, b2b: History, consumer: History) -> History:
    return b2b if request.param == "b2b" else consumer


def product(events: list[UsageEvent]) -> list[UsageEvent]:
    return [e for e in events if e.kind is EventKind.ACTIVITY]


def run_cli(tmp_path: Path, name: str, *extra: str) -> tuple[Path, Path]:
    out, truth = tmp_path / name, tmp_path / f"{name}.truth.json"
    args = ["--shape", "b2b", "--accounts", "25", "--months", "2", "--start", "2025-12-01", "--seed", "5"]
    assert main([*args, *extra, "--out", str(out), "--truth", str(truth)]) == 0
    return out, truth


def test_same_seed_gives_the_same_bytes_and_another_seed_others(tmp_path: Path) -> None:
    first, first_truth = run_cli(tmp_path, "a.jsonl")
    again, again_truth = run_cli(tmp_path, "b.jsonl")
    other, other_truth = run_cli(tmp_path, "c.jsonl", "--seed", "6")

    assert first.read_bytes() == again.read_bytes()
    assert first_truth.read_bytes() == again_truth.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert first_truth.read_bytes() != other_truth.read_bytes()


def test_gzip_output_is_deterministic_and_holds_the_same_lines(tmp_path: Path) -> None:
    plain, _ = run_cli(tmp_path, "h.jsonl")
    packed, _ = run_cli(tmp_path, "h.jsonl.gz")
    repacked, _ = run_cli(tmp_path, "h2.jsonl.gz")

    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert packed.read_bytes() == repacked.read_bytes()


def test_shuffle_keeps_every_line_but_not_their_order(tmp_path: Path) -> None:
    ordered, _ = run_cli(tmp_path, "o.jsonl")
    shuffled, _ = run_cli(tmp_path, "s.jsonl", "--shuffle")
    lines, mixed = ordered.read_text().splitlines(), shuffled.read_text().splitlines()

    assert Counter(lines) == Counter(mixed)
    assert lines != mixed
    times = [parse_event(line).occurred_at_ms for line in mixed]
    assert sum(b < a for a, b in zip(times, times[1:], strict=False)) > len(times) // 10


def test_scale_multiplies_product_events_only() -> None:
    def run(scale: float) -> tuple[Truth, Counter[bool]]:
        portfolio = generate_portfolio(PortfolioParams("consumer", 300, 2, date(2025, 3, 3), 4, scale=scale))
        return portfolio.truth, Counter(
            parse_event(line).kind is EventKind.ACTIVITY for line in portfolio.lines()
        )

    (single_truth, single), (double_truth, double) = run(1.0), run(2.0)
    # Expected counts double exactly; the drawn ones take other random paths, hence the tolerance.
    for one, two in zip(single_truth.accounts, double_truth.accounts, strict=True):
        assert two.weekly_events == pytest.approx(2 * one.weekly_events, abs=0.15)
    assert 1.8 <= double[True] / single[True] <= 2.2
    assert double[False] == single[False]


def test_module_runs_as_a_command(tmp_path: Path) -> None:
    out, truth = tmp_path / "cmd.jsonl", tmp_path / "cmd.json"
    args = [
        "--shape",
        "consumer",
        "--accounts",
        "20",
        "--months",
        "2",
        "--out",
        str(out),
        "--truth",
        str(truth),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "streamer.sim.portfolio", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )

    assert "events" in done.stderr and "accounts" in done.stderr
    assert len(load_truth(truth).accounts) == 20
    assert out.read_text().count("\n") > 1000


def test_truth_file_round_trips(b2b: History) -> None:
    encoded = truth_to_json(b2b.truth)

    assert truth_from_dict(orjson.loads(encoded)) == b2b.truth
    assert b2b.truth.params.churn_rate == 1.2


def test_every_line_is_an_event_churnwatch_accepts(any_shape: History) -> None:
    # The fixture already parsed every line; ids must also be unique, or the worker would drop events.
    assert len(any_shape.events) == len(any_shape.lines) > 10_000
    assert len({e.event_id for e in any_shape.events}) == len(any_shape.events)


def test_events_are_in_time_order(any_shape: History) -> None:
    times = [e.occurred_at_ms for e in any_shape.events]
    assert times == sorted(times)


def test_existing_accounts_start_before_the_history_and_come_first(b2b: History) -> None:
    start = ms(b2b.truth.history_start)
    existing = [a for a in b2b.truth.accounts if a.started_at < b2b.truth.history_start]
    first = b2b.events[: 2 * len(existing)]

    assert 0.6 * len(b2b.truth.accounts) <= len(existing) < len(b2b.truth.accounts)
    assert {e.kind for e in first} == {EventKind.SUBSCRIPTION_STARTED, EventKind.ACCOUNT_UPDATED}
    assert all(e.occurred_at_ms < start for e in first)
    assert b2b.events[2 * len(existing)].occurred_at_ms >= start


def test_each_account_starts_once_at_started_at_with_its_facts(any_shape: History) -> None:
    events = any_shape.by_account()
    for account in any_shape.truth.accounts:
        started = [e for e in events[account.account_id] if e.kind is EventKind.SUBSCRIPTION_STARTED]
        facts = next(e for e in events[account.account_id] if e.kind is EventKind.ACCOUNT_UPDATED)
        assert [e.occurred_at_ms for e in started] == [ms(account.started_at)]
        assert (facts.properties["seats"], facts.properties["plan"]) == (account.seats, account.plan)
        assert facts.properties["segment"] == account.segment


def test_churners_cancel_once_at_cancelled_at_and_stayers_never(any_shape: History) -> None:
    events = any_shape.by_account()
    cancelled = 0
    for account in any_shape.truth.accounts:
        cancels = [
            e.occurred_at_ms for e in events[account.account_id] if e.kind is EventKind.SUBSCRIPTION_CANCELLED
        ]
        if account.cancelled_at is None:
            assert cancels == [], account
        else:
            assert account.churner
            assert cancels == [ms(account.cancelled_at)]
            cancelled += 1
    assert cancelled >= 10


def test_no_event_before_an_account_starts_or_after_it_cancels(any_shape: History) -> None:
    events = any_shape.by_account()
    for account in any_shape.truth.accounts:
        times = [e.occurred_at_ms for e in events[account.account_id]]
        assert min(times) == ms(account.started_at)
        if account.cancelled_at is not None:
            assert max(times) == ms(account.cancelled_at)


def test_nothing_at_all_is_tracked_during_the_global_outage(any_shape: History) -> None:
    outages = [c for c in any_shape.truth.calendar if c.kind == "tracking_outage"]
    (glob,) = [c for c in outages if c.scope.sources == c.scope.events == ()]
    start, end = ms(glob.start), ms(glob.end)

    assert end - start == 36 * 3_600_000
    assert not [e for e in any_shape.events if start <= e.occurred_at_ms < end]
    # ...while the days around it are ordinary.
    assert [e for e in any_shape.events if start - DAY_MS <= e.occurred_at_ms < start]
    assert [e for e in any_shape.events if end <= e.occurred_at_ms < end + DAY_MS]


def test_the_partial_outage_loses_exactly_its_scope(any_shape: History) -> None:
    (partial,) = [
        c
        for c in any_shape.truth.calendar
        if c.kind == "tracking_outage" and (c.scope.sources or c.scope.events)
    ]
    start, end = ms(partial.start), ms(partial.end)
    sources = {a.account_id: a.source for a in any_shape.truth.accounts}
    inside = [e for e in any_shape.events if start <= e.occurred_at_ms < end]

    assert end - start == 3 * DAY_MS
    assert inside
    for e in inside:
        assert sources[e.account_id] not in partial.scope.sources
        assert e.name not in partial.scope.events


def test_a_partial_outage_of_the_segment_source_is_drawn_for_some_seeds() -> None:
    scopes = set()
    for seed in range(8):
        truth = generate_portfolio(PortfolioParams("b2b", 40, 3, date(2025, 3, 3), seed)).truth
        scopes |= {(c.scope.sources, c.scope.events) for c in truth.calendar if c.kind == "tracking_outage"}

    assert scopes == {((), ()), (("segment",), ()), ((), ("login",))}


def weekly_counts(h: History, start: int) -> tuple[int, float]:
    """(events of the 7 days from ``start``, median over the history's whole weeks) of product events."""
    t0 = ms(h.truth.history_start)
    per_week = Counter((e.occurred_at_ms - t0) // (7 * DAY_MS) for e in product(h.events))
    weeks = (ms(h.truth.history_end) - t0) // (7 * DAY_MS)
    median = statistics.median(per_week[w] for w in range(weeks))
    return sum(1 for e in product(h.events) if start <= e.occurred_at_ms < start + 7 * DAY_MS), median


def test_christmas_week_of_b2b_is_a_small_fraction_of_a_median_week(b2b: History) -> None:
    # Each b2b account works at 10-25% of its usual level during the lull (15% of them at 30-60%):
    # weighted by activity that is 0.13-0.30 of a normal week; noise and churn give the margins.
    week, median = weekly_counts(b2b, ms(datetime.fromisoformat("2025-12-25T00:00:00+00:00")))
    assert 0.08 * median <= week <= 0.40 * median


def test_christmas_week_of_consumers_is_different_but_not_silent(consumer: History) -> None:
    # Consumers' lull factors are drawn from 0.4-1.7 (mean 1.05).
    week, median = weekly_counts(consumer, ms(datetime.fromisoformat("2025-12-25T00:00:00+00:00")))
    assert 0.6 * median <= week <= 1.5 * median


def weekday_shares(h: History) -> tuple[float, float]:
    counts = Counter((e.occurred_at_ms // DAY_MS + 3) % 7 >= 5 for e in product(h.events))
    return counts[False] / 5, counts[True] / 2


def test_b2b_weekends_are_quiet_and_consumer_weekends_are_not(b2b: History, consumer: History) -> None:
    weekday, weekend = weekday_shares(b2b)
    assert 0.05 <= weekend / weekday <= 0.2
    weekday, weekend = weekday_shares(consumer)
    assert 1.0 <= weekend / weekday <= 1.5


def test_an_account_gone_dark_makes_no_product_event_after_it(b2b: History) -> None:
    # Dark churners, and the failed onboardings that end in silence, have a "went_dark" episode.
    events = b2b.by_account()
    dark = [(a, ep) for a in b2b.truth.accounts for ep in a.episodes if ep.kind == "went_dark"]
    seen_before = 0
    assert any(a.archetype == "dark" for a, _ in dark)
    for account, episode in dark:
        assert account.archetype in ("dark", "failed_onboarding")
        if account.archetype == "dark":
            assert account.signal_start_at == episode.start
        went = ms(episode.start)
        assert not [e for e in product(events[account.account_id]) if e.occurred_at_ms >= went]
        seen_before += any(e.occurred_at_ms < went for e in product(events[account.account_id]))
    assert seen_before > 0


def test_a_key_user_loss_churner_loses_its_champion_while_the_others_go_on(b2b: History) -> None:
    events = b2b.by_account()
    churners = [a for a in b2b.truth.accounts if a.archetype == "key_user_loss"]
    assert churners
    for account in churners:
        assert account.signal_start_at is not None
        signal, champion = ms(account.signal_start_at), account.key_users[0]
        before = Counter(e.user_id for e in product(events[account.account_id]) if e.occurred_at_ms < signal)
        after = Counter(e.user_id for e in product(events[account.account_id]) if e.occurred_at_ms >= signal)
        assert before.most_common(1)[0][0] == champion
        assert champion not in after
        assert sum(after.values()) > 0


def test_a_broken_tracking_account_has_a_silent_gap(b2b: History, consumer: History) -> None:
    gaps = [
        (h, a.account_id, ep)
        for h in (b2b, consumer)
        for a in h.truth.accounts
        for ep in a.episodes
        if ep.kind == "tracking_gap"
    ]
    assert gaps
    for h, account_id, gap in gaps:
        times = [e.occurred_at_ms for e in h.by_account()[account_id]]
        assert 3 * DAY_MS <= ms(gap.end) - ms(gap.start) <= 10 * DAY_MS
        assert not [t for t in times if ms(gap.start) <= t < ms(gap.end)]
        assert [t for t in times if t >= ms(gap.end)]


def test_segment_accounts_send_segment_messages_and_the_others_native_ones(any_shape: History) -> None:
    sources = {a.account_id: a.source for a in any_shape.truth.accounts}
    share = Counter(sources.values())["segment"] / len(sources)
    seen: Counter[tuple[str, str]] = Counter()
    for line in any_shape.lines:
        doc = orjson.loads(line)
        account = doc.get("account_id") or doc.get("groupId") or doc["context"]["groupId"]
        shape = doc.get("type", "native")
        seen[sources[account], shape] += 1
        if shape == "group":
            assert set(doc["traits"]) >= {"seats", "plan", "segment", "name"}

    assert share == pytest.approx(0.2, abs=0.01)
    assert set(seen) == {("native", "native"), ("segment", "track"), ("segment", "group")}


def test_nps_answers_are_sparse(any_shape: History) -> None:
    answered = {e.account_id for e in any_shape.events if e.kind is EventKind.NPS_RESPONSE}
    surveys = [c for c in any_shape.truth.calendar if c.kind == "nps_survey"]

    assert len(surveys) == 2  # early November and early February
    assert 0 < len(answered) < 0.8 * len(any_shape.truth.accounts)


def test_b2b_churn_over_a_year_matches_its_rate_and_mix() -> None:
    truth = generate_portfolio(PortfolioParams("b2b", 1000, 12, date(2025, 1, 6), 1)).truth
    cancelled = [a for a in truth.accounts if a.cancelled_at is not None]
    mix = Counter(a.archetype for a in cancelled)
    new = [a for a in truth.accounts if a.started_at >= truth.history_start]

    assert truth.params.churn_rate is not None and 0.15 <= truth.params.churn_rate <= 0.2
    assert 0.13 <= len(cancelled) / 1000 <= 0.22
    assert 0.15 <= mix["no_signal"] / len(cancelled) <= 0.25
    assert set(mix) == {"declining", "key_user_loss", "dark", "no_signal", "failed_onboarding", "thin"}
    assert 0.2 <= len(new) / 1000 <= 0.3
    assert all(a.archetype in ("onboarding_success", "failed_onboarding") or a.churner for a in new)


def test_failed_onboardings_are_new_accounts_that_never_ramp_up() -> None:
    truth = generate_portfolio(PortfolioParams("b2b", 1000, 12, date(2025, 1, 6), 1)).truth
    failed = [a for a in truth.accounts if a.archetype == "failed_onboarding"]

    assert failed
    for a in failed:
        assert a.started_at >= truth.history_start and a.signal_start_at == a.started_at
        assert a.users <= 3 and len(a.features) <= 4
        if a.cancelled_at is not None:
            assert 30 <= (a.cancelled_at - a.started_at).days <= 125


def test_b2b_accounts_that_use_less_churn_more() -> None:
    truth = generate_portfolio(PortfolioParams("b2b", 1000, 12, date(2025, 1, 6), 2)).truth
    existing = sorted(
        (a for a in truth.accounts if a.started_at < truth.history_start),
        key=lambda a: a.weekly_events / a.seats,
    )
    quarter = len(existing) // 4
    rate = [
        sum(a.cancelled_at is not None for a in existing[i * quarter : (i + 1) * quarter]) / quarter
        for i in (0, 3)
    ]

    assert rate[0] > 1.3 * rate[1]


def test_consumer_churn_is_monthly_mostly_without_warning_and_early() -> None:
    truth = generate_portfolio(PortfolioParams("consumer", 2000, 8, date(2025, 6, 2), 1)).truth
    start, end = truth.history_start, truth.history_end
    month_s = 2_629_746
    cancelled = [a for a in truth.accounts if a.cancelled_at is not None]
    months = sum(
        (min(end, a.cancelled_at or end) - max(start, a.started_at)).total_seconds() for a in truth.accounts
    )
    early = [a for a in cancelled if (a.cancelled_at - a.started_at).total_seconds() < 3 * month_s]  # type: ignore[operator]

    assert 0.028 <= len(cancelled) / (months / month_s) <= 0.06
    assert 0.4 <= sum(a.archetype == "no_signal" for a in cancelled) / len(cancelled) <= 0.6
    assert {a.archetype for a in cancelled} == {"no_signal", "declining", "dark"}
    assert len(early) > 0.25 * len(cancelled)
    assert 0.3 <= sum(a.started_at >= start for a in truth.accounts) / 2000 <= 0.5
