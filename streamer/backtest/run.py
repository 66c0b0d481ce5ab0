"""``churnwatch backtest``: hold the score and the alerts against a history's own cancellations."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamer.backtest.history import read_history
from streamer.backtest.replay import Replay, replay
from streamer.backtest.summary import dumps, summarize
from streamer.core.events import InvalidEvent, parse_event_time
from streamer.core.policy import DAY_MS, PolicyError, load_policy
from streamer.gctuning import collected_rarely

__all__ = ["add_parser", "evaluation_dates", "run"]

REFERENCE_NAMES = 20


def evaluation_dates(first_ms: int, last_ms: int, every: str, warmup_days: int) -> list[int]:
    """Month (or ISO week) starts, UTC, from ``warmup_days`` after the first event up to the last event."""
    start = first_ms + warmup_days * DAY_MS
    dates = []
    if every == "week":
        day = -(-start // DAY_MS)
        day += (7 - (day + 3) % 7) % 7  # the next Monday (1970-01-01 was a Thursday)
        while day * DAY_MS <= last_ms:
            dates.append(day * DAY_MS)
            day += 7
        return dates
    at = datetime.fromtimestamp(start / 1000, tz=UTC)
    year, month = at.year, at.month
    if (at.day, at.hour, at.minute, at.second, at.microsecond) != (1, 0, 0, 0, 0):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    while True:
        ms = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
        if ms > last_ms:
            return dates
        dates.append(ms)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _parse_dates(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if len(part) == 10:
            part += "T00:00:00Z"
        out.append(parse_event_time(part, "--at"))
    return sorted(out)


def add_parser(sub: Any) -> None:
    """Add the ``backtest`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "backtest",
        help="replay a history in event time and measure the score and alerts against its cancellations",
        description=(
            "Replays a history of usage events (JSON lines as accepted on usage-events, native or Segment "
            "shape, plain or gzip, in any order) through the worker's own parser, rules and engine, in pure "
            "event time, and measures the health score and the alerts against the history's own "
            "subscription_cancelled events."
        ),
    )
    p.add_argument("history", type=Path, help="JSON lines (.jsonl or .jsonl.gz)")
    p.add_argument(
        "--rules", type=Path, help="rules file (as CHURNWATCH_RULES_FILE); built-in defaults without"
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--at", help="evaluation dates, comma separated (YYYY-MM-DD or RFC 3339)")
    when.add_argument(
        "--every", choices=("month", "week"), default="month", help="evaluate at each month (or week) start"
    )
    p.add_argument("--horizon-days", type=int, default=30, help='"cancels within" this many days (30)')
    p.add_argument(
        "--follow-days",
        type=int,
        default=60,
        help="an alert counts when followed by a cancellation within this many days (60)",
    )
    p.add_argument(
        "--warmup-days", type=int, default=35, help="no evaluation date before this many days of history (35)"
    )
    p.add_argument("--partitions", type=int, default=8, help="the worker's CHURNWATCH_PARTITIONS (8)")
    p.add_argument(
        "--allowed-lateness-ms", type=int, default=30_000, help="the worker's CHURNWATCH_ALLOWED_LATENESS_MS"
    )
    p.add_argument("--scores-out", type=Path, help="CSV: one row per live account per evaluation date")
    p.add_argument("--alerts-out", type=Path, help="JSON lines: every alert raised, as on churn-alerts")
    p.add_argument("--json", type=Path, help="every figure, as JSON")
    p.add_argument("--report", type=Path, help="a self-contained HTML report with plots")
    p.add_argument(
        "--truth", type=Path, help="a generated portfolio's truth file: adds figures per archetype"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on a terminal)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run a backtest; 0 on success, 2 on bad input (the message says why)."""
    console = Console(stderr=True)
    # The processor logs each data gap for an operator; a backtest reports them in its figures.
    logging.getLogger("churnwatch.worker").setLevel(logging.ERROR)
    try:
        policies = load_policy(args.rules.read_text(encoding="utf-8") if args.rules else None)
    except (OSError, PolicyError) as err:
        _error(f"backtest: rules: {err}")
        return 2
    if not args.history.exists():
        _error(f"backtest: {args.history}: no such file")
        return 2
    show = sys.stderr.isatty() if args.progress is None else args.progress
    started = time.monotonic()
    with (
        collected_rarely(),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
            transient=True,
        ) as bars,
    ):
        size = args.history.stat().st_size
        reading = bars.add_task("reading and sorting", total=size)
        history = read_history(args.history, progress=lambda n: bars.update(reading, completed=n))
        bars.update(reading, completed=size)
        try:
            if history.first_ms is None or history.last_ms is None:
                _error(f"backtest: {args.history}: no valid event (invalid: {dict(history.invalid)})")
                return 2
            try:
                dates = (
                    _parse_dates(args.at)
                    if args.at
                    else evaluation_dates(history.first_ms, history.last_ms, args.every, args.warmup_days)
                )
            except InvalidEvent as err:
                _error(f"backtest: {err}")
                return 2
            names = [name for name, _ in history.names.most_common(REFERENCE_NAMES)]
            replaying = bars.add_task("replaying", total=history.valid)
            result = replay(
                history,
                policies,
                dates,
                partitions=args.partitions,
                allowed_lateness_ms=args.allowed_lateness_ms,
                feature_names=names,
                progress=lambda n: bars.update(replaying, completed=n),
            )
            bars.update(replaying, completed=history.valid)
        finally:
            history.close()
    elapsed = time.monotonic() - started
    truth = _load_truth(args.truth) if args.truth else None
    settings = {
        "rules": str(args.rules) if args.rules else "built-in defaults",
        "partitions": args.partitions,
        "allowed_lateness_ms": args.allowed_lateness_ms,
        "seconds": round(elapsed, 1),
        "events_per_second": round(history.valid / elapsed) if elapsed else None,
    }
    doc = summarize(
        history,
        result,
        result.first_seen,
        horizon_days=args.horizon_days,
        follow_days=args.follow_days,
        settings=settings,
        truth=truth,
        warmup_days=args.warmup_days,
    )
    if args.scores_out:
        _write_scores(args.scores_out, result)
    if args.alerts_out:
        with args.alerts_out.open("wb") as out:
            out.writelines(value + b"\n" for _, value in result.alerts)
    if args.json:
        args.json.write_bytes(dumps(doc) + b"\n")
    if args.report:
        from streamer.backtest.report import render_report

        args.report.write_text(render_report(doc, result, history.cancellations), encoding="utf-8")
    _print(doc, Console(width=None if sys.stdout.isatty() else 140))
    return 0


def _error(message: str) -> None:
    sys.stderr.write(message + "\n")


def _write_scores(path: Path, result: Replay) -> None:
    components = sorted({name for row in result.rows for name in row.components})
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["account_id", "at", "score", "band", *components, "cancelled_at"])
        for row in result.rows:
            writer.writerow(
                [
                    row.account_id,
                    _iso(row.at_ms),
                    row.score,
                    row.band,
                    *(row.components.get(c, "") for c in components),
                    _iso(row.next_cancel_ms) if row.next_cancel_ms is not None else "",
                ]
            )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _load_truth(path: Path) -> dict[str, str]:
    doc = orjson.loads(path.read_bytes())
    accounts = doc.get("accounts", doc) if isinstance(doc, dict) else doc
    if isinstance(accounts, dict):
        return {str(k): str(v.get("archetype") if isinstance(v, dict) else v) for k, v in accounts.items()}
    return {str(a["account_id"]): str(a["archetype"]) for a in accounts}


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _print(doc: dict[str, Any], console: Console) -> None:
    h, r = doc["history"], doc["ranking"]
    console.print(
        f"[bold]churnwatch backtest[/bold]: {h['events']:,} events of {h['accounts']:,} accounts, "
        f"{h['first_event'][:10]} to {h['last_event'][:10]}, {h['cancellations']:,} cancellations "
        f"({doc['settings'].get('events_per_second') or 0:,} events/s)"
    )
    pooled, ref = r["pooled"], r["reference"]
    table = Table(title=f"Ranking: cancels within {r['horizon_days']} days", title_justify="left")
    for col in ("", "rows", "cancellations", "AUC", "top-decile lift"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(
        "score, pooled",
        str(pooled["rows"]),
        str(pooled["cancellations"]),
        _fmt(pooled["auc"]),
        _fmt(pooled["lift_top_decile"]),
    )
    table.add_row("28-day event count", "", "", _fmt(pooled["auc_28d_event_count"]), "")
    table.add_row(
        "reference model (later half)",
        str(ref["test_rows"]),
        str(ref["test_positives"]),
        _fmt(ref["model_auc"]),
        _fmt(ref["model_lift"]),
    )
    table.add_row(
        "score (same rows)",
        str(ref["test_rows"]),
        str(ref["test_positives"]),
        _fmt(ref["score_auc"]),
        _fmt(ref["score_lift"]),
    )
    console.print(table)
    if ref.get("note"):
        console.print(f"  reference model: {ref['note']}")
    bands = Table(title="Cancellation rate by band", title_justify="left")
    for col in ("band", "rows", "cancellations", "rate"):
        bands.add_column(col, justify="left" if col == "band" else "right")
    for band, b in doc["bands"].items():
        bands.add_row(band, str(b["rows"]), str(b["cancellations"]), _fmt(b["rate"], pct=True))
    console.print(bands)
    a = doc["alerts"]
    base = _fmt(a["base_rate"], pct=True)
    kinds = Table(
        title=f"Alerts (followed = a cancellation within {a['follow_days']} days; base rate {base})",
        title_justify="left",
    )
    for col in ("kind", "alerts", "per 100 accts/month", "precision", "× base", "recall", "median lead (d)"):
        kinds.add_column(col, justify="left" if col == "kind" else "right")
    for k in a["kinds"]:
        kinds.add_row(
            k["kind"],
            str(k["alerts"]),
            f"{k['per_100_accounts_month']:.1f}",
            _fmt(k["precision"], pct=True),
            _fmt(k["lift_over_base"]),
            _fmt(k["recall"], pct=True),
            _fmt(k["median_lead_days"]),
        )
    console.print(kinds)
    weeks = ", ".join(f"{w['week']} {w['alerts']} ({w['vs_median']}×)" for w in a["busiest_weeks"][:3])
    console.print(f"Busiest weeks (median week {a['median_week']} alerts): {weeks}")
    if "by_archetype" in doc:
        arch = Table(title="By archetype (truth file)", title_justify="left")
        for col in ("archetype", "accounts", "alerted", "cancellations", "recall", "median lead (d)"):
            arch.add_column(col, justify="left" if col == "archetype" else "right")
        for name, x in doc["by_archetype"].items():
            arch.add_row(
                name,
                str(x["accounts"]),
                str(x["accounts_alerted"]),
                str(x["cancellations"]),
                _fmt(x["recall"], pct=True),
                _fmt(x["median_lead_days"]),
            )
        console.print(arch)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamer.backtest.run``: the backtest alone."""
    parser = argparse.ArgumentParser(prog="churnwatch")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backtest", *(argv if argv is not None else sys.argv[1:])])
    code: int = args.func(args)
    return code
