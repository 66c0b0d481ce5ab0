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

__all__ = ["HEADER_MAX", "health_url", "slack_message"]

# Slack rejects a header whose plain_text is longer than this.
HEADER_MAX = 150
_ARROWS = {"up": "↑", "down": "↓", "flat": "→"}
_KIND_TITLES = {
    "account_quiet": "account went quiet",
    "usage_drop": "usage dropped",
    "health_degraded": "health degraded",
    "account_recovered": "account recovered",
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
