"""The dashboard's onboarding view and the onboarding part of the account detail."""

from __future__ import annotations

import re

import httpx

from api.dashboard.render import kind_label
from tests.unit.api.conftest import ANN, WRITER, AppFactory, StoreModel, client_for, snapshot
from tests.unit.api.test_dashboard import at_risk_ids, put, text_of
from tests.unit.api.test_onboarding import onboarding

NEXT = {"name": "first_report", "due_at": "2025-03-20T00:00:00.000Z"}


def onboarding_ids(fragment: str) -> list[str]:
    return re.findall(r'<tr class="onboarding-row" data-account="([^"]*)"', fragment)


def _seed(model: StoreModel) -> None:
    put(model, snapshot("s1", **onboarding("stuck", 2, next_=NEXT)))
    put(model, snapshot("s2", **onboarding("stuck", 10, 3, done=1, total=4, next_=NEXT)))
    put(model, snapshot("b1", **onboarding("behind", 5)))
    put(model, snapshot("b2", **onboarding("behind", 1)))
    put(model, snapshot("t1", **onboarding("on_track", next_=NEXT)))
    put(model, snapshot("c1", **onboarding("complete", done=4)))
    # Not listed: its onboarding days are over, it tells no status, or it is of the older shape.
    put(model, snapshot("late", **onboarding("behind", 30, active=False)))
    put(model, snapshot("done", **onboarding("complete", active=False, done=4)))
    put(model, snapshot("none", **onboarding(None)))
    put(model, snapshot("older", onboarding=True))


async def test_onboarding_lists_stuck_then_behind_by_days_overdue_then_on_track_then_complete(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _seed(model)

    resp = await client.get("/dashboard/fragments/onboarding")
    first = (await client.get("/dashboard/fragments/onboarding", params={"limit": 3})).text

    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    assert onboarding_ids(resp.text) == ["s2", "s1", "b1", "b2", "t1", "c1"]
    assert onboarding_ids(first) == ["s2", "s1", "b1"]
    rows = dict(
        zip(onboarding_ids(resp.text), resp.text.split('<tr class="onboarding-row"')[1:], strict=True)
    )
    assert text_of(rows["s2"]).endswith(
        "S2 s2 Stuck 1 of 4 first_report due 2025-03-20 milestone_0 10 d overdue milestone_1 3 d overdue ann"
    )
    assert 'data-onboarding="stuck"' in rows["s2"] and "onboarding-stuck" in rows["s2"]
    assert text_of(rows["t1"]).endswith("T1 t1 On track 1 of 4 first_report due 2025-03-20 none ann")
    assert text_of(rows["c1"]).endswith("C1 c1 Complete 4 of 4 – none ann")


async def test_onboarding_says_when_it_is_empty(client: httpx.AsyncClient, model: StoreModel) -> None:
    put(model, snapshot("older", onboarding=True))

    body = (await client.get("/dashboard/fragments/onboarding")).text

    assert onboarding_ids(body) == []
    assert text_of(body) == "No account in its onboarding days with milestones."


async def test_onboarding_lists_only_the_accounts_a_restricted_key_may_read(
    make_app: AppFactory, model: StoreModel
) -> None:
    put(model, snapshot("mine", **onboarding("stuck", 4)))
    other = snapshot("theirs", **onboarding("stuck", 9))
    other["facts"] = {**other["facts"], "owner": "bob"}
    put(model, other)
    app = make_app()
    async with client_for(app, ANN) as ann, client_for(app, WRITER) as writer, client_for(app, None) as anon:
        mine = (await ann.get("/dashboard/fragments/onboarding")).text
        wrong_scope = await writer.get("/dashboard/fragments/onboarding")
        missing = await anon.get("/dashboard/fragments/onboarding")

    assert onboarding_ids(mine) == ["mine"]
    assert wrong_scope.status_code == 403
    assert missing.status_code == 401


async def test_milestone_names_are_text_never_markup(client: httpx.AsyncClient, model: StoreModel) -> None:
    doc = snapshot(
        "evil", **onboarding("stuck", 2, next_={"name": "<img src=x onerror=alert(1)>", "due_at": "x"})
    )
    put(model, doc)

    body = (await client.get("/dashboard/fragments/onboarding")).text
    detail = (await client.get("/dashboard/fragments/accounts/evil")).text

    for html in (body, detail):
        assert "<img" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # a due date that is not a date-time reads as unknown
    assert "due –" in text_of(body)


async def test_the_account_detail_shows_onboarding_status_and_progress_of_either_shape(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _seed(model)
    put(model, snapshot("settled", onboarding=False))

    stuck = text_of((await client.get("/dashboard/fragments/accounts/s2")).text)
    done = text_of((await client.get("/dashboard/fragments/accounts/done")).text)
    older = text_of((await client.get("/dashboard/fragments/accounts/older")).text)
    settled = text_of((await client.get("/dashboard/fragments/accounts/settled")).text)
    none = text_of((await client.get("/dashboard/fragments/accounts/none")).text)

    assert (
        "Onboarding Stuck 1 of 4 milestones reached. Next: first_report, due 2025-03-20 "
        "Missing: milestone_0, due 2025-03-05, 10 d overdue "
        "Missing: milestone_1, due 2025-03-05, 3 d overdue "
        "Reached: signed_up on 2025-03-01 Score history" in stuck
    )
    assert "Onboarding Complete 4 of 4 milestones reached; its onboarding days are over. Reached:" in done
    assert "Onboarding: in its first onboarding days (this snapshot tells no milestones)." in older
    assert "Onboarding" not in settled
    # in its first days without a milestone status
    assert "Onboarding No milestone 1 of 4 milestones reached." in none


async def test_an_onboarding_account_of_either_shape_is_at_risk_only_once_the_core_warns_of_it(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(model, snapshot("new-bool", score=11, band="poor", onboarding=True))
    put(model, snapshot("new-object", score=12, band="poor", **onboarding("stuck", 3)))
    quiet = {"quiet_since": "2025-03-10T00:00:00.000Z", "drop_since": None, "poor": False}
    put(model, snapshot("quiet-object", score=13, band="poor", episodes=quiet, **onboarding("behind", 1)))
    put(model, snapshot("past-object", score=14, band="poor", **onboarding("complete", active=False)))

    rows = at_risk_ids((await client.get("/dashboard/fragments/at-risk")).text)

    assert rows == ["quiet-object", "past-object"]


async def test_the_page_has_the_onboarding_table_and_the_onboarding_alert_kinds_read_as_words(
    make_app: AppFactory,
) -> None:
    async with client_for(make_app(), None) as anon:
        page = (await anon.get("/dashboard")).text

    assert '<tbody id="onboarding-body"></tbody>' in page
    assert re.search(r"<style|style=", page) is None
    assert kind_label("milestone_missed") == "Onboarding milestone missed"
    assert kind_label("milestone_reached") == "Onboarding milestone reached"
    assert kind_label("onboarding_complete") == "Onboarding complete"


async def test_the_kpis_count_onboarding_statuses_and_each_start_month_s_completion(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    started = {"status": "active", "started_at": "2025-03-02T10:00:00Z", "cancelled_at": None}
    put(model, snapshot("a", subscription=started, **onboarding("complete", done=4)))
    put(model, snapshot("b", subscription=started, **onboarding("behind", 3)))
    put(model, snapshot("c", subscription=started, **onboarding("stuck", 20)))
    put(model, snapshot("d", subscription=started, **onboarding("stuck", 15)))

    resp = await client.get("/dashboard/fragments/portfolio")

    assert resp.status_code == 200
    text = re.sub(r"\s+", " ", text_of(resp.text))
    assert "2 stuck 1 behind 0 on track 1 complete" in text
    # Only months in which a subscription started are shown.
    assert "started 2025-03: 1 of 4 complete (25.0%)" in text and "started 2025-02" not in text
