"""Slack Block Kit messages for alerts, posted to an incoming-webhook URL.

The message reads top to bottom the way a success manager triages: who and what (header), how bad
and whose (score, band with trend, owner, severity), why (one line of evidence) and where to look
(a button to the account's health in the churnwatch API).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from streamer.core.snapshot import trend
from streamer.delivery.config import alert_facts

__all__ = ["DIGEST_LINES", "HEADER_MAX", "digest_slack_message", "health_url", "slack_message"]

# Slack rejects a header whose plain_text is longer than this.
HEADER_MAX = 150
_ARROWS = {"up": "↑", "down": "↓", "flat": "→"}
_KIND_TITLES = {
    "account_quiet": "account went quiet",
    "usage_drop": "usage dropped",
    "health_degraded": "health degraded",
    "account_recovered": "account recovered",
    "milestone_missed": "onboarding milestone missed",
    "milestone_reached": "onboarding milestone reached",
    "onboarding_complete": "onboarding complete",
}


def health_url(public_url: str, account_id: str) -> str:
    """The API URL of an account's health."""
    return f"{public_url.rstrip('/')}/v1/accounts/{quote(account_id, safe='')}/health"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _evidence_line(kind: str, evidence: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if kind == "account_quiet" and evidence.get("last_activity_at"):
        parts.append(f"last activity {evidence['last_activity_at']}")
    current, baseline = _number(evidence.get("current_weekly")), _number(evidence.get("baseline_weekly"))
    if current is not None and baseline is not None:
        parts.append(f"this week {current:g} vs baseline {baseline:g} per week")
    ratio = _number(evidence.get("ratio"))
    if ratio is not None:
        parts.append(f"ratio {ratio:.0%}")
    if evidence.get("closed_episode"):
        parts.append(f"closes {evidence['closed_episode']}")
    return "; ".join(parts) or "no evidence recorded"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _plain(text: str, limit: int | None = None) -> dict[str, Any]:
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def slack_message(alert: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """Build the Block Kit message for one alert.

    Args:
        alert: The alert document (as produced by ``alert_to_dict``).
        public_url: The externally reachable base URL of the churnwatch API.

    Returns:
        The JSON body for a Slack incoming webhook: a fallback ``text`` and the ``blocks``.
    """
    facts = alert_facts(alert)
    health, evidence = _mapping(alert.get("health")), _mapping(alert.get("evidence"))
    who = f"{facts.name} ({facts.account_id})" if facts.name else facts.account_id
    title = f"{who}: {_KIND_TITLES.get(facts.kind, facts.kind)}"
    current, baseline = _number(health.get("current_weekly")), _number(health.get("baseline_weekly"))
    arrow = _ARROWS[trend(current, baseline)] if current is not None and baseline is not None else ""
    score = health.get("score", "?")
    band = facts.band or "unknown"
    url = health_url(public_url, facts.account_id)
    return {
        "text": title,
        "blocks": [
            {"type": "header", "text": _plain(title, 150)},
            {
                "type": "section",
                "fields": [
                    _mrkdwn(f"*Score*\n{score} ({band}) {arrow}".rstrip()),
                    _mrkdwn(f"*Owner*\n{facts.owner or 'unassigned'}"),
                    _mrkdwn(f"*Severity*\n{alert.get('severity', 'unknown')}"),
                    _mrkdwn(f"*Detected*\n{alert.get('detected_at', '?')}"),
                ],
            },
            {"type": "context", "elements": [_mrkdwn(_evidence_line(facts.kind, evidence)[:2000])]},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": _plain("Open account health", 75),
                        "url": url,
                        "action_id": "open_health",
                    }
                ],
            },
        ],
    }


# Slack allows 50 blocks and 3,000 characters per section text: a few lines per section, then a count.
DIGEST_LINES = 10
_ALERT_TITLES = {"account_quiet": "quiet", "usage_drop": "usage dropped", "health_degraded": "poor health"}


def _who(item: Mapping[str, Any]) -> str:
    return f"*{item['name']}* ({item['account_id']})" if item.get("name") else f"*{item['account_id']}*"


def _money(item: Mapping[str, Any]) -> str:
    arr = _number(item.get("arr"))
    return f", ARR {arr:,.0f} {item.get('currency') or ''}".rstrip() if arr is not None else ""


def _section(title: str, lines: list[str], total: int) -> dict[str, Any]:
    shown = lines[:DIGEST_LINES]
    if total > len(shown):
        shown.append(f"…and {total - len(shown)} more")
    text = f"*{title} ({total})*\n" + ("\n".join(f"• {line}" for line in shown) if shown else "none")
    return {"type": "section", "text": _mrkdwn(text[:3000])}


def digest_slack_message(doc: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """Build the Block Kit message of one owner's daily digest.

    Args:
        doc: The digest document (as built by :func:`streamer.delivery.digest.digest_document`).
        public_url: The externally reachable base URL of the churnwatch API.

    Returns:
        The JSON body for a Slack incoming webhook: what got worse, the open alerts, the renewals.
    """
    owner = doc.get("owner") or "unowned accounts"
    title = f"Daily digest for {owner}, {doc['date']}"
    totals = doc["totals"]
    worse = [
        f"{_who(w)}: {w['score_before']} ({w['band_before']}) → {w['score']} ({w['band']}){_money(w)}"
        for w in doc["worse"]
    ]
    alerts = [
        f"{_who(a)}: {_ALERT_TITLES.get(a['kind'], a['kind'])}"
        + (f" since {str(a['since'])[:10]}" if a.get("since") else "")
        + f", score {a['score']} ({a['band']}){_money(a)}"
        for a in doc["open_alerts"]
    ]
    renewals = [
        f"{_who(r)}: renews {str(r['renewal_at'])[:10]} (in {r['days_left']} days), "
        f"score {r['score']} ({r['band']}){_money(r)}"
        for r in doc["renewals"]
    ]
    return {
        "text": title,
        "blocks": [
            {"type": "header", "text": _plain(title, HEADER_MAX)},
            {"type": "context", "elements": [_mrkdwn(f"Since {doc['since']} ({doc['time_zone']})")]},
            _section("Got worse", worse, totals["worse"]),
            _section("Open alerts", alerts, totals["open_alerts"]),
            _section("Renewals due", renewals, totals["renewals"]),
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": _plain("Open the dashboard", 75),
                        "url": f"{public_url.rstrip('/')}/dashboard",
                        "action_id": "open_dashboard",
                    }
                ],
            },
        ],
    }
