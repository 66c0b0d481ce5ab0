// churnwatch dashboard: plain JS, no build step. The HTML fragments come from the API, rendered and
// escaped on the server; live alerts come from /v1/alerts/stream and are rendered with textContent only.
"use strict";

(() => {
  const KEY = "churnwatch.apiKey";
  const BASE = "/dashboard";
  const REFRESH_MS = 30000; // table and KPIs also refresh on every live alert
  const $ = (id) => document.getElementById(id);
  let selected = null;
  let stream = null;
  let refreshTimer = null;
  let pending = null;

  // The URL fragment carries "key=..." (handed over once, then removed) and "account=<id>" (the
  // account whose detail is open, so that a link opens it). A fragment never reaches the server.
  function fragmentParams() {
    const params = new Map();
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const eq = part.indexOf("=");
      if (eq <= 0) continue;
      try {
        params.set(part.slice(0, eq), decodeURIComponent(part.slice(eq + 1)));
      } catch (_) {
        /* not percent-encoded properly: ignored */
      }
    }
    return params;
  }

  function accountHash(accountId) {
    return accountId === null ? "" : "#account=" + encodeURIComponent(accountId);
  }

  function takeKeyFromFragment() {
    // make demo prints /dashboard#key=...: the key is kept for the tab and leaves the address bar.
    const params = fragmentParams();
    if (!params.get("key")) return false;
    sessionStorage.setItem(KEY, params.get("key"));
    const account = params.has("account") ? params.get("account") : null;
    history.replaceState(null, "", location.pathname + location.search + accountHash(account));
    return true;
  }

  const linkedAccount = () => (fragmentParams().has("account") ? fragmentParams().get("account") : null);

  const key = () => sessionStorage.getItem(KEY);

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function fetchText(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + key() }, cache: "no-store" });
    if (!resp.ok) {
      let message = resp.status + " " + resp.statusText;
      try {
        message = (await resp.json()).error.message;
      } catch (_) {
        /* not an API error body */
      }
      throw new HttpError(resp.status, message);
    }
    return resp.text();
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    // The URL keeps naming the account: it opens once a key is accepted.
    selected = null;
    $("detail-panel").hidden = true;
    $("detail").textContent = "";
    setLive(false, "offline");
    if (stream) stream.abort();
  }

  function fail(err) {
    if (err instanceof HttpError && err.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin("The key was not accepted: " + err.message);
    } else if (err instanceof HttpError && err.status === 403) {
      showLogin("This key lacks a scope the dashboard needs: " + err.message);
    } else if (!(err instanceof DOMException && err.name === "AbortError")) {
      $("error").textContent = String(err.message || err);
    }
  }

  // The at-risk list's order and the owner whose accounts are shown ("" for all): what the server
  // rendered the page with, from its URL (/dashboard?sort=…&owner=…), so a link shows the same.
  function query(withSort) {
    const table = $("at-risk-body").closest("table");
    const params = new URLSearchParams();
    if (withSort && table.dataset.sort) params.set("sort", table.dataset.sort);
    if (table.dataset.owner) params.set("owner", table.dataset.owner);
    const text = params.toString();
    return text ? "?" + text : "";
  }

  async function loadOverview() {
    const [rows, kpis, weeks, onboarding] = await Promise.all([
      fetchText(BASE + "/fragments/at-risk" + query(true)),
      fetchText(BASE + "/fragments/portfolio" + query(false)),
      fetchText(BASE + "/fragments/portfolio-weeks" + query(false)),
      fetchText(BASE + "/fragments/onboarding"),
    ]);
    $("at-risk-body").innerHTML = rows; // server-rendered, escaped
    $("kpis").innerHTML = kpis;
    $("weeks").innerHTML = weeks;
    $("onboarding-body").innerHTML = onboarding;
    $("error").textContent = "";
    markSelected();
  }

  async function loadOwners() {
    $("owner-select").innerHTML = await fetchText(BASE + "/fragments/owners" + query(false));
  }

  async function loadFeed() {
    $("alert-feed").innerHTML = await fetchText(BASE + "/fragments/alerts");
  }

  // The detail opens in a panel fixed to the viewport, so it is in view wherever the table was
  // scrolled to; a refresh (a live alert of that account) updates it without moving anything.
  async function loadDetail(accountId, refresh) {
    const panel = $("detail-panel");
    if (!refresh) {
      if (selected !== accountId) {
        $("detail").textContent = "";
        $("detail-status").textContent = "Loading " + accountId + "\u2026";
      }
      panel.hidden = false;
      panel.focus({ preventScroll: true });
    }
    selected = accountId;
    markSelected();
    // Dots too: an id of "." or ".." would otherwise be a dot segment that fetch() resolves away.
    const path = encodeURIComponent(accountId).replace(/\./g, "%2E");
    let html;
    try {
      html = await fetchText(BASE + "/fragments/accounts/" + path);
    } catch (err) {
      if (selected !== accountId) return;
      if (err instanceof HttpError && (err.status === 401 || err.status === 403)) throw err;
      $("detail").textContent = "";
      $("detail-status").textContent =
        err instanceof HttpError && err.status === 404
          ? "No account " + accountId + " (or none this key may read)."
          : "The account could not be loaded: " + String(err.message || err);
      return;
    }
    if (selected !== accountId) return;
    $("detail-status").textContent = "";
    $("detail").innerHTML = html; // server-rendered, escaped
    if (!refresh) panel.scrollTop = 0;
  }

  function closeDetail() {
    const was = selected;
    selected = null;
    $("detail-panel").hidden = true;
    $("detail").textContent = "";
    markSelected();
    for (const row of document.querySelectorAll("tr.account-row")) {
      if (row.dataset.account === was) row.focus({ preventScroll: true });
    }
  }

  // Opens (or closes, for null) the detail the URL names.
  function followUrl() {
    const accountId = linkedAccount();
    if (accountId === null) {
      if (selected !== null) closeDetail();
    } else if (accountId !== selected || $("detail-panel").hidden) {
      loadDetail(accountId, false).catch(fail);
    }
  }

  function openAccount(accountId) {
    // A new history entry: Back closes the detail again. The hashchange opens it.
    if (linkedAccount() === accountId) loadDetail(accountId, false).catch(fail);
    else location.hash = accountHash(accountId);
  }

  function dismissDetail() {
    history.replaceState(null, "", location.pathname + location.search);
    closeDetail();
  }

  function markSelected() {
    for (const row of document.querySelectorAll("tr.account-row")) {
      row.classList.toggle("selected", row.dataset.account === selected);
    }
  }

  function scheduleRefresh(accountId) {
    // Many alerts can arrive at once: refresh at most once a second.
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      loadOverview().catch(fail);
      if (selected !== null && (accountId === undefined || accountId === selected)) {
        loadDetail(selected, true).catch(fail);
      }
    }, 1000);
  }

  function span(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  // The labels of alert kinds, rendered by the server into the page from the same table as the
  // fragments' (render.KIND_LABELS).
  let kindLabels = null;
  function kindLabel(kind) {
    if (kindLabels === null) {
      try {
        kindLabels = JSON.parse($("alert-feed").dataset.kindLabels || "{}");
      } catch (_) {
        kindLabels = {};
      }
    }
    if (Object.prototype.hasOwnProperty.call(kindLabels, kind)) return kindLabels[kind];
    const words = kind.replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  // Who an alert is about, as render.alert_subject says it: the name the alert carries, else the
  // name the table shows for that account, else its id (a partition for an operations alert).
  function alertSubject(alert) {
    const name = (alert.account || {}).name;
    if (name) return String(name);
    const id = alert.account_id;
    if (id === null || id === undefined) {
      const partition = (alert.evidence || {}).partition;
      return partition === undefined || partition === null ? "" : "partition " + partition;
    }
    for (const row of document.querySelectorAll("tr.account-row")) {
      if (row.dataset.account === String(id)) {
        const shown = row.querySelector(".account-name");
        if (shown && shown.textContent) return shown.textContent;
      }
    }
    return String(id);
  }

  function addAlert(alert) {
    const li = document.createElement("li");
    const kind = String(alert.kind || "");
    li.className = "alert new alert-" + kind.replace(/[^a-z_]/g, "");
    li.dataset.alert = String(alert.alert_id || "");
    li.dataset.account = String(alert.account_id || "");
    li.dataset.kind = kind;
    const health = alert.health || {};
    const subject = span("account", alertSubject(alert));
    subject.title = String(alert.account_id || "");
    li.append(
      span("kind", kindLabel(kind)),
      subject,
      span("severity", String(alert.severity || "")),
      span("score", health.score === undefined ? "" : health.score + " " + (health.band || "")),
    );
    const time = document.createElement("time");
    time.dateTime = String(alert.detected_at || "");
    time.textContent = String(alert.detected_at || "").replace("T", " ").slice(0, 16) + " UTC";
    li.append(time);
    const feed = $("alert-feed");
    feed.prepend(li);
    while (feed.children.length > 200) feed.lastElementChild.remove();
  }

  function setLive(on, text) {
    const el = $("live-status");
    el.classList.toggle("on", on);
    el.classList.toggle("off", !on);
    el.textContent = text;
  }

  // Server-Sent Events read with fetch(), so the key travels in the Authorization header and never
  // in a URL (EventSource cannot send headers).
  async function follow(backoffMs) {
    stream = new AbortController();
    try {
      const resp = await fetch("/v1/alerts/stream", {
        headers: { Authorization: "Bearer " + key(), Accept: "text/event-stream" },
        signal: stream.signal,
        cache: "no-store",
      });
      if (!resp.ok) throw new HttpError(resp.status, "alert stream: " + resp.status);
      setLive(true, "live");
      backoffMs = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (event === "alert" && data.length) {
            const alert = JSON.parse(data.join("\n"));
            addAlert(alert);
            scheduleRefresh(alert.account_id);
          }
        }
      }
    } catch (err) {
      if (err instanceof HttpError && (err.status === 401 || err.status === 403)) return fail(err);
      if (err instanceof DOMException && err.name === "AbortError") return;
    }
    setLive(false, "reconnecting");
    setTimeout(() => follow(Math.min(backoffMs * 2, 30000)), backoffMs);
  }

  async function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    try {
      await Promise.all([loadOverview(), loadFeed(), loadOwners()]);
    } catch (err) {
      return fail(err);
    }
    followUrl();
    follow(1000);
    clearInterval(refreshTimer);
    refreshTimer = setInterval(() => loadOverview().catch(fail), REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeKeyFromFragment();
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, $("key-input").value.trim());
      $("key-input").value = "";
      start();
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      clearInterval(refreshTimer);
      showLogin("");
    });
    const lists = [["at-risk-body", "tr.account-row"], ["onboarding-body", "tr.onboarding-row"]];
    for (const [body, rows] of lists) {
      $(body).addEventListener("click", (ev) => {
        const row = ev.target.closest(rows);
        if (row) openAccount(row.dataset.account);
      });
      $(body).addEventListener("keydown", (ev) => {
        const row = ev.target.closest(rows);
        if (row && ev.key === "Enter") openAccount(row.dataset.account);
      });
    }
    // Choosing an owner loads the page for it: the choice is in the URL, so it can be linked to.
    $("owner-select").addEventListener("change", () => $("owner-filter").requestSubmit());
    $("detail-close").addEventListener("click", dismissDetail);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !$("detail-panel").hidden) dismissDetail();
    });
    window.addEventListener("hashchange", () => {
      if (takeKeyFromFragment()) {
        if (stream) stream.abort();
        start();
      } else if (key() && !$("app").hidden) {
        followUrl();
      }
    });
    if (key()) start();
    else showLogin("");
  });
})();
