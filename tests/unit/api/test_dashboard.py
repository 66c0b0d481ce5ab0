"""The dashboard: a public page without data, fragments behind the keys, and every account string escaped."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import httpx
import pytest

from api.dashboard.render import KIND_LABELS, ago, alert_subject, kind_label, sparkline_points
from streamer.core.alerts import AlertKind
from tests.unit.api.conftest import ANN, NOW, WRITER, AppFactory, StoreModel, alert, client_for, snapshot

EVIL_NAME = '<script>alert("name")</script>'
EVIL_ID = '"><img src=x onerror=alert(1)>'
EVIL_OWNER = "<b onmouseover=alert(2)>owner</b>"


def put(model: StoreModel, doc: dict[str, object]) -> None:
    model.apply_health(str(doc["account_id"]), doc)


def daily(events: list[int]) -> dict[str, object]:
    return {"from": "2025-02-09", "to": "2025-03-15", "events": events}


def text_of(fragment: str) -> str:
    """What a person reads of an HTML fragment: its text, without tags or attributes."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]*>", " ", fragment))).strip()


def components() -> list[dict[str, object]]:
    return [
        {
            "name": "recency",
            "value": 20.0,
            "weight": 0.2,
            "contribution": 4.0,
            "explanation": "last active 11 days ago <i>x</i>",
        }
    ]


async def test_the_page_is_public_holds_no_data_and_locks_down_scripts(
    make_app: AppFactory, model: StoreModel
) -> None:
    put(model, snapshot("acme", facts={"name": "Acme Secret Corp"}))
    async with client_for(make_app(), None) as anon:
        page = await anon.get("/dashboard")
        script = await anon.get("/dashboard/static/dashboard.js")
        style = await anon.get("/dashboard/static/dashboard.css")
        missing = await anon.get("/dashboard/static/nope.js")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Acme" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    # No inline script and nothing from another origin: everything is served locally.
    assert re.search(r"<script>", page.text) is None
    assert re.search(r"<style|style=", page.text) is None
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "/v1/alerts/stream" in script.text
    assert style.status_code == 200
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/fragments/at-risk",
        "/dashboard/fragments/portfolio",
        "/dashboard/fragments/alerts",
        "/dashboard/fragments/accounts/acme",
    ],
)
async def test_fragments_need_a_key_with_the_read_scopes(make_app: AppFactory, path: str) -> None:
    app = make_app()
    async with client_for(app, None) as anon, client_for(app, WRITER) as writer:
        missing = await anon.get(path)
        wrong_scope = await writer.get(path)

    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert wrong_scope.status_code == 403


async def test_at_risk_rows_lowest_score_first_with_trend_recency_and_sparkline(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(model, snapshot("mid-co", score=55, band="average", trend="up", daily=daily([5] * 35)))
    put(
        model,
        snapshot(
            "bad-co",
            score=12,
            band="poor",
            trend="down",
            last_activity_at=(NOW - timedelta(days=3, hours=2)).isoformat(),
            daily=daily([9] * 20 + [0] * 15),
        ),
    )

    resp = await client.get("/dashboard/fragments/at-risk")

    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    rows = re.findall(r'data-account="([^"]*)"', resp.text)
    assert rows == ["bad-co", "mid-co"]
    bad = resp.text.split('data-account="mid-co"')[0]
    assert "band-poor" in bad and "3 d ago" in bad and "\u2198" in bad
    points = re.search(r'<polyline points="([^"]*)"', bad)
    assert points is not None and len(points.group(1).split()) == 35


def at_risk_ids(fragment: str) -> list[str]:
    return re.findall(r'<tr class="account-row" data-account="([^"]*)"', fragment)


def onboarding(account_id: str, score: int, band: str, **episodes: object) -> dict[str, object]:
    """A snapshot of an account in its first weeks, with the episodes the core has opened for it."""
    opened = {"quiet_since": None, "drop_since": None, "poor": False, **episodes}
    return snapshot(account_id, score=score, band=band, onboarding=True, episodes=opened)


async def test_at_risk_lists_poor_and_average_accounts_only_lowest_score_first(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(model, snapshot("star", score=99, band="good"))
    put(model, snapshot("fine", score=70, band="good"))
    put(model, snapshot("middling", score=55, band="average"))
    put(model, snapshot("edge", score=40, band="average"))
    put(model, snapshot("sinking", score=12, band="poor"))
    # A segment with stricter bands: poor at 45, above an average account of the default bands.
    put(model, snapshot("strict", score=45, band="poor"))

    resp = await client.get("/dashboard/fragments/at-risk")

    assert resp.status_code == 200
    assert at_risk_ids(resp.text) == ["sinking", "edge", "strict", "middling"]


def revenue(account_id: str, score: int, band: str, **facts: object) -> dict[str, object]:
    return snapshot(account_id, score=score, band=band, facts={"name": account_id, **facts})


async def test_at_risk_sorts_by_arr_or_renewal_with_accounts_without_them_last(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(
        model,
        revenue("big", 60, "average", arr=90_000, currency="EUR", renewal_at="2025-09-01T00:00:00.000Z"),
    )
    put(
        model,
        revenue("small", 10, "poor", arr=1_000.4, currency="EUR", renewal_at="2025-04-07T12:00:00.000Z"),
    )
    put(model, revenue("unknown", 20, "poor"))
    put(model, revenue("rich-but-fine", 90, "good", arr=10**6, currency="EUR"))

    by_arr = (await client.get("/dashboard/fragments/at-risk", params={"sort": "-arr"})).text
    by_renewal = (await client.get("/dashboard/fragments/at-risk", params={"sort": "renewal_at"})).text

    assert at_risk_ids(by_arr) == ["big", "small", "unknown"]
    assert at_risk_ids(by_renewal) == ["small", "big", "unknown"]
    # NOW is 2025-03-15 12:00: the renewal of "small" is 23 days away.
    assert "EUR 90,000" in by_arr and "EUR 1,000" in by_arr and "in 23 d" in by_renewal
    bad = await client.get("/dashboard/fragments/at-risk", params={"sort": "score,-arr"})
    assert bad.status_code == 422


async def test_the_page_links_each_at_risk_order_and_marks_the_current_one(client: httpx.AsyncClient) -> None:
    page = (await client.get("/dashboard", params={"sort": "-arr"})).text
    assert 'data-sort="-arr"' in page
    assert re.findall(r'<a href="/dashboard\?sort=([^"]*)"( aria-current="true")?>', page) == [
        ("score", ""),
        ("-arr", ' aria-current="true"'),
        ("renewal_at", ""),
    ]
    assert 'data-sort="score"' in (await client.get("/dashboard", params={"sort": "nonsense"})).text


async def test_onboarding_accounts_are_at_risk_only_once_the_core_warns_of_them(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    # A day-old account scores low on the history it does not have yet: no warning, not listed.
    put(model, onboarding("brand-new", score=11, band="poor"))
    put(model, onboarding("ramping", score=52, band="average"))
    # Warned of by the core: gone quiet, usage dropped, still poor after its first weeks.
    put(model, onboarding("went-quiet", score=30, band="poor", quiet_since="2025-03-10T00:00:00.000Z"))
    put(model, onboarding("dropping", score=48, band="average", drop_since="2025-03-01T00:00:00.000Z"))
    put(model, onboarding("not-taking-off", score=20, band="poor", poor=True))
    put(model, snapshot("settled", score=35, band="poor"))

    rows = at_risk_ids((await client.get("/dashboard/fragments/at-risk")).text)

    assert rows == ["not-taking-off", "went-quiet", "settled", "dropping"]


async def test_at_risk_fills_its_limit_past_onboarding_accounts_without_warnings(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    for i in range(3):
        put(model, onboarding(f"new-{i}", score=5 + i, band="poor"))
    put(model, snapshot("poor-a", score=20, band="poor"))
    put(model, snapshot("poor-b", score=30, band="poor"))
    put(model, snapshot("avg", score=50, band="average"))

    rows = at_risk_ids((await client.get("/dashboard/fragments/at-risk", params={"limit": 2})).text)

    assert rows == ["poor-a", "poor-b"]


async def test_at_risk_says_honestly_why_it_is_empty(client: httpx.AsyncClient, model: StoreModel) -> None:
    empty = text_of((await client.get("/dashboard/fragments/at-risk")).text)
    put(model, snapshot("star", score=99, band="good"))
    put(model, onboarding("brand-new", score=11, band="poor"))
    healthy = (await client.get("/dashboard/fragments/at-risk")).text

    assert empty.startswith("No accounts yet")
    assert at_risk_ids(healthy) == []
    assert text_of(healthy).startswith("No account at risk")


async def test_at_risk_lists_only_the_accounts_a_restricted_key_may_read(
    make_app: AppFactory, model: StoreModel
) -> None:
    put(model, snapshot("anns", score=20, band="poor", facts={"name": "Ann's", "owner": "ann"}))
    put(model, snapshot("bobs", score=10, band="poor", facts={"name": "Bob's", "owner": "bob"}))
    async with client_for(make_app(), ANN) as ann:
        rows = at_risk_ids((await ann.get("/dashboard/fragments/at-risk")).text)

    assert rows == ["anns"]


async def test_at_risk_limit_is_validated(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dashboard/fragments/at-risk", params={"limit": 0})).status_code == 422
    assert (await client.get("/dashboard/fragments/at-risk", params={"limit": "x"})).status_code == 422


async def test_a_malicious_account_name_is_rendered_escaped(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    facts = {"name": EVIL_NAME, "owner": EVIL_OWNER, "plan": "<plan>", "segment": "smb", "seats": 3}
    put(model, snapshot(EVIL_ID, facts=facts, components=components(), daily=daily([1] * 35)))
    model.apply_alert(alert("a1", EVIL_ID))

    table = (await client.get("/dashboard/fragments/at-risk")).text
    detail = (await client.get(f"/dashboard/fragments/accounts/{EVIL_ID}")).text
    feed = (await client.get("/dashboard/fragments/alerts")).text

    for html in (table, detail):
        assert EVIL_NAME not in html
        assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in html
        assert EVIL_OWNER not in html and "&lt;b onmouseover=alert(2)&gt;" in html
    for html in (table, detail, feed):
        assert "<img" not in html
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<i>x</i>" not in detail and "&lt;i&gt;x&lt;/i&gt;" in detail


async def test_account_detail_explains_the_score_and_lists_its_alerts(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(
        model,
        snapshot(
            "acme",
            score=31,
            band="poor",
            components=components(),
            nps={"score": 3, "at": "2025-03-01T00:00:00.000Z"},
            open_tickets=2,
            subscription={"status": "cancelled", "started_at": None, "cancelled_at": "2025-03-02T00:00:00Z"},
            episodes={"quiet_since": "2025-03-04T00:00:00.000Z", "drop_since": None, "poor": True},
        ),
    )
    model.apply_alert(alert("q1", "acme", "account_quiet"))
    model.apply_alert(alert("other", "globex", "usage_drop"))

    resp = await client.get("/dashboard/fragments/accounts/acme")
    unknown = await client.get("/dashboard/fragments/accounts/nobody")

    assert resp.status_code == 200
    assert "recency" in resp.text and "last active 11 days ago" in resp.text
    assert "NPS: 3" in resp.text and "Open tickets: 2" in resp.text and "cancelled 2025-03-02" in resp.text
    assert 'data-alert="q1"' in resp.text and 'data-alert="other"' not in resp.text
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


async def test_portfolio_cards_show_bands_churn_and_nps(client: httpx.AsyncClient, model: StoreModel) -> None:
    subscription = {
        "status": "cancelled",
        "started_at": "2025-01-10T00:00:00Z",
        "cancelled_at": "2025-03-05T00:00:00Z",
    }
    put(model, snapshot("a", band="poor", subscription=subscription, nps={"score": 2, "at": None}))
    started = {"status": "active", "started_at": "2025-01-10T00:00:00Z", "cancelled_at": None}
    put(model, snapshot("b", band="good", subscription=started, nps={"score": 10, "at": None}))

    resp = await client.get("/dashboard/fragments/portfolio")

    assert resp.status_code == 200
    text = re.sub(r"\s+", " ", resp.text)
    assert "1 good" in text and "0 average" in text and "1 poor" in text
    assert "2025-03: 50.0%" in text
    assert "0 <span" in text and "2 answers" in text  # NPS: one promoter, one detractor


def test_sparkline_scales_into_the_box() -> None:
    assert sparkline_points([]) == ""
    flat = sparkline_points([0, 0, 0], width=12, height=10)
    assert flat == "1.0,9.0 6.0,9.0 11.0,9.0"
    assert sparkline_points([0, 5, 10], width=12, height=10) == "1.0,9.0 6.0,5.0 11.0,1.0"


def test_ago_reads_relative_to_the_given_now() -> None:
    assert ago(None, NOW) == "never"
    assert ago("not a time", NOW) == "never"
    assert ago((NOW - timedelta(seconds=20)).isoformat(), NOW) == "just now"
    assert ago((NOW - timedelta(minutes=12)).isoformat(), NOW) == "12 min ago"
    assert ago((NOW - timedelta(hours=5)).isoformat().replace("+00:00", "Z"), NOW) == "5 h ago"


async def test_alerts_read_with_the_account_name_and_a_label_never_the_raw_kind(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(model, snapshot("acme", score=20, band="poor", facts={"name": "Acme Corp", "owner": "ann"}))
    model.apply_alert(alert("q1", "acme", "account_quiet", account={"name": "Acme Corp"}))
    model.apply_alert(alert("d1", "acme", "usage_drop", account={"name": "Acme Corp"}))

    feed = (await client.get("/dashboard/fragments/alerts")).text
    detail = (await client.get("/dashboard/fragments/accounts/acme")).text

    items = re.findall(r"<li [^>]*>.*?</li>", feed, flags=re.S)
    assert sorted(text_of(item).split(" high")[0] for item in items) == [
        "Account went quiet Acme Corp",
        "Usage dropped Acme Corp",
    ]
    history = detail.split("Alert history")[1]
    assert "Account went quiet" in text_of(history) and "Usage dropped" in text_of(history)
    for fragment in (feed, detail):
        # The raw kinds stay in attributes (for styling and tests), never in the text people read.
        assert "account_quiet" not in text_of(fragment) and "usage_drop" not in text_of(fragment)
    assert 'data-kind="account_quiet"' in feed


async def test_open_alert_counts_are_labelled(client: httpx.AsyncClient, model: StoreModel) -> None:
    quiet = {"quiet_since": "2025-03-07T00:00:00.000Z", "drop_since": None, "poor": False}
    put(model, snapshot("acme", score=20, band="poor", episodes=quiet))
    model.apply_alert(alert("q1", "acme", "account_quiet"))

    cards = text_of((await client.get("/dashboard/fragments/portfolio")).text)

    assert "Account went quiet: 1" in cards
    assert "account_quiet" not in cards


async def test_the_page_hands_the_live_feed_the_same_kind_labels(make_app: AppFactory) -> None:
    async with client_for(make_app(), None) as anon:
        page = (await anon.get("/dashboard")).text

    found = re.search(r'id="alert-feed"[^>]*data-kind-labels="([^"]*)"', page)
    assert found is not None
    assert json.loads(unescape(found.group(1))) == KIND_LABELS


def test_every_alert_kind_has_a_label_and_an_unknown_kind_reads_as_words() -> None:
    assert set(KIND_LABELS) == {kind.value for kind in AlertKind}
    assert kind_label("account_quiet") == "Account went quiet"
    assert kind_label("seats_shrunk") == "Seats shrunk"
    assert kind_label(None) == ""


@pytest.mark.parametrize(
    ("doc", "subject"),
    [
        # The name the alert carries.
        ({"account_id": "acme", "account": {"name": "Acme Corp"}}, "Acme Corp"),
        # An alert without a name (older records): its id.
        ({"account_id": "acme", "account": {}}, "acme"),
        ({"account_id": "acme"}, "acme"),
        # An operations alert is about a partition, not an account.
        ({"account_id": None, "account": {}, "evidence": {"partition": 3}}, "partition 3"),
    ],
)
def test_an_alert_is_about_the_account_name_else_its_id(doc: dict[str, object], subject: str) -> None:
    assert alert_subject(doc) == subject
