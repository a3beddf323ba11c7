// faas dashboard: polls the gateway's admin API about once a second and draws what it says.
// The admin token comes from the URL fragment (#token=..., never sent to the server) or
// the login form, lives in this tab's sessionStorage, and goes out only as
// `Authorization: Bearer` to this origin. Everything shown is set with textContent.
"use strict";

(() => {
  const TOKEN_KEY = "faas.adminToken";
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000;
  const MAX_SPAN_S = 600; // charts show at most the last 10 minutes...
  const MIN_SPAN_S = 60; // ...and at least the last minute
  const MAX_EVENTS = 60;
  const MAX_BODY_SHOWN = 200000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 300;
  const H = 60;

  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // function name -> card element
  let token = null;
  let timer = null;
  let running = false;
  let generation = 0; // a new one on each start: answers to an older poll are dropped
  let failures = 0;

  class AuthError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // -- token -------------------------------------------------------------------------

  function takeTokenFromFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const fromUrl = params.get("token");
    if (location.hash) {
      // keep the token out of the address bar, bookmarks and history
      history.replaceState(null, "", location.pathname + location.search);
    }
    if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl.trim());
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function showLogin(message, kind) {
    stop();
    $("dashboard").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    const box = $("login-message");
    box.textContent = message;
    box.dataset.kind = kind;
    setConnection("off", "Not connected");
    $("token-input").focus();
  }

  function signIn(value) {
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("forget").hidden = false;
    start();
  }

  function forget(message, kind) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(message, kind);
  }

  // -- API -----------------------------------------------------------------------------

  async function errorText(response) {
    try {
      const payload = await response.json();
      return payload.error || response.statusText;
    } catch {
      return response.statusText;
    }
  }

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    // 401: no or bad token; 403 or 404: no admin API for this address (loopback only)
    if ([401, 403, 404].includes(response.status)) {
      throw new AuthError(response.status, await errorText(response));
    }
    if (!response.ok) {
      throw new Error(`${path} answered ${response.status}: ${await errorText(response)}`);
    }
    return response.json();
  }

  // -- polling -------------------------------------------------------------------------

  function start() {
    stop();
    running = true;
    generation += 1;
    tick(generation);
  }

  function stop() {
    running = false;
    clearTimeout(timer);
  }

  async function tick(current) {
    if (!running || current !== generation) return;
    clearTimeout(timer);
    try {
      const [listing, stats, events] = await Promise.all([
        api("/system/functions"),
        api("/system/stats"),
        api("/system/scale-events"),
      ]);
      if (!running || current !== generation) return;
      render(listing, stats, events.events || []);
      failures = 0;
      $("banner").hidden = true;
      setConnection("live", `Live · updated ${clock(stats.now)}`);
    } catch (error) {
      if (!running || current !== generation) return;
      if (error instanceof AuthError) {
        if (error.status === 401) {
          forget(
            "The gateway refused this admin token (401 Unauthorized). Paste the current " +
              "token from .faas/admin-token, or open the link `faas ui` prints.",
            "error",
          );
        } else {
          showLogin(
            `The gateway does not serve its admin API to this address (${error.status}: ` +
              `${error.message}). It answers on loopback only, unless functions.yaml sets ` +
              "gateway.admin_remote: true.",
            "error",
          );
        }
        return;
      }
      failures += 1;
      setConnection("error", "Disconnected · retrying");
      const banner = $("banner");
      banner.textContent =
        error instanceof TypeError
          ? "Cannot reach the gateway. Is `faas up` still running? Retrying…"
          : String(error.message || error);
      banner.hidden = false;
    }
    // one timer at most: a poll started early (the tab came back) replaces the pending one
    const base = document.hidden ? HIDDEN_POLL_MS : POLL_MS;
    clearTimeout(timer);
    timer = setTimeout(() => tick(current), Math.max(base, Math.min(POLL_MS * 2 ** failures, 8000)));
  }

  function setConnection(state, text) {
    $("connection").dataset.state = state;
    $("connection-text").textContent = text;
  }

  // -- formatting ----------------------------------------------------------------------

  function clock(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
  }

  function ago(seconds) {
    if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    if (value < 10) return `${value.toFixed(1)} ms`;
    if (value < 1000) return `${Math.round(value)} ms`;
    return `${(value / 1000).toFixed(2)} s`;
  }

  function rate(value) {
    if (!value) return "0";
    if (value < 10) return value.toFixed(2);
    return value.toFixed(1);
  }

  function percent(value) {
    if (value === null || value === undefined) return "–";
    if (value === 0) return "0%";
    return `${(value * 100).toFixed(value < 0.1 ? 1 : 0)}%`;
  }

  function mib(bytes) {
    const value = bytes / 2 ** 20;
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} MiB`;
  }

  function set(root, field, text) {
    const element = root.querySelector(`[data-field="${field}"]`);
    if (element.textContent !== text) element.textContent = text;
    return element;
  }

  // -- rendering -----------------------------------------------------------------------

  function render(listing, stats, events) {
    $("project").textContent = listing.project || "";
    document.title = listing.project ? `faas · ${listing.project}` : "faas dashboard";
    const functions = listing.functions || [];
    const totals = { ready: 0, starting: 0, queue: 0, flight: 0, rate: 0, calls: 0, errors: 0 };
    const seen = new Set();
    const container = $("functions");
    functions.forEach((fn, index) => {
      seen.add(fn.name);
      let card = cards.get(fn.name);
      if (!card) {
        card = newCard(fn.name);
        cards.set(fn.name, card);
      }
      if (container.children[index] !== card) container.insertBefore(card, container.children[index] || null);
      const fnStats = (stats.functions || {})[fn.name];
      updateCard(card, fn, fnStats, stats.now);
      totals.ready += fn.replicas;
      totals.starting += fn.starting;
      totals.queue += fn.queue_depth;
      totals.flight += fn.in_flight;
      if (fnStats) {
        totals.rate += fnStats.rate;
        totals.calls += fnStats.calls;
        totals.errors += fnStats.errors;
      }
    });
    for (const [name, card] of cards) {
      if (!seen.has(name)) {
        card.remove();
        cards.delete(name);
      }
    }
    $("no-functions").hidden = functions.length > 0;
    $("total-functions").textContent = String(functions.length);
    $("total-ready").textContent = String(totals.ready);
    $("total-starting").textContent = String(totals.starting);
    $("total-queue").textContent = String(totals.queue);
    $("total-in-flight").textContent = String(totals.flight);
    $("total-rate").textContent = rate(totals.rate);
    const errors = $("total-errors");
    errors.textContent = totals.calls ? percent(totals.errors / totals.calls) : "–";
    errors.classList.toggle("bad", totals.errors > 0);
    updateFunctionChoices(functions.map((fn) => fn.name));
    renderWarm(listing.warm);
    renderEvents(events, stats.now);
  }

  // The warm pools (absent on backends without them): one row per kind of function.
  function renderWarm(warm) {
    $("warm").hidden = !warm;
    if (!warm) return;
    const pools = warm.pools || [];
    // A service backend's warm services (Swarm) have no memory budget: tasks per service.
    $("warm-memory").textContent = warm.memory_budget
      ? `${mib(warm.memory)} of ${mib(warm.memory_budget)}`
      : `${warm.maximum} tasks per warm service`;
    $("warm-memory").title = warm.memory_budget
      ? `memory the warm watchdogs hold, of gateway.warm_pool_memory; at most ${warm.maximum} per pool`
      : "gateway.warm_tasks; ready: the tasks this gateway could claim now";
    $("no-warm").hidden = pools.length > 0;
    $("warm-pools").parentElement.hidden = pools.length === 0;
    const rows = pools.map((pool) => {
      const row = document.createElement("tr");
      row.dataset.pool = pool.pool;
      const cells = [
        pool.pool,
        `${pool.ready} / ${pool.target}`,
        pool.per_watchdog === null || pool.per_watchdog === undefined ? "–" : mib(pool.memory),
        pool.preload.length ? pool.preload.join(", ") : "–",
        pool.functions.length ? pool.functions.join(", ") : "–",
      ].map((text) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        return cell;
      });
      cells[1].title = `${pool.held} held: ready, on their way or being handed over`;
      if (pool.per_watchdog) cells[2].title = `${mib(pool.per_watchdog)} per watchdog`;
      row.append(...cells);
      return row;
    });
    $("warm-pools").replaceChildren(...rows);
  }

  function newCard(name) {
    const card = $("card-template").content.firstElementChild.cloneNode(true);
    card.dataset.function = name;
    set(card, "name", name).title = name;
    return card;
  }

  function updateCard(card, fn, fnStats, now) {
    const badge = set(card, "state", fn.state);
    badge.dataset.state = fn.state;
    card.classList.toggle("failed", fn.state === "failed");
    const scale = fn.scale || {};
    set(card, "scale", `min ${scale.min} · max ${scale.max}`);
    set(card, "ready", String(fn.replicas));
    const extra = [];
    if (fn.starting) extra.push(`+${fn.starting} starting`);
    if (fn.draining) extra.push(`${fn.draining} draining`);
    set(card, "starting", extra.join(", "));
    set(card, "queue_depth", String(fn.queue_depth)).classList.toggle("busy", fn.queue_depth > 0);
    set(card, "in_flight", String(fn.in_flight));
    set(card, "cold_start", ms(fn.last_cold_start_ms));
    const phases = fn.last_cold_start_phases;
    card.querySelector('[data-field="cold_start"]').title = phases
      ? Object.entries(phases).map(([k, v]) => `${k}: ${v}`).join("\n")
      : "";
    set(card, "rate", fnStats ? rate(fnStats.rate) : "–");
    set(card, "error_rate", fnStats ? percent(fnStats.error_rate) : "–").classList.toggle(
      "bad",
      Boolean(fnStats && fnStats.errors > 0),
    );
    set(card, "p50", fnStats ? ms(fnStats.p50_ms) : "–");
    set(card, "p95", fnStats ? ms(fnStats.p95_ms) : "–");
    const problem = fn.error || fn.reload_error || "";
    const errorBox = set(card, "error", problem);
    errorBox.hidden = !problem;

    const series = (fnStats && fnStats.series) || { t: [] };
    const live = { ready: fn.replicas, starting: fn.starting, queue_depth: fn.queue_depth, in_flight: fn.in_flight };
    // as much history as there is, between one and ten minutes
    const oldest = series.t && series.t.length ? series.t[0] : now;
    const span = Math.min(MAX_SPAN_S, Math.max(MIN_SPAN_S, Math.ceil((now - oldest) / 30) * 30));
    const replicasMax = drawChart(card.querySelector('[data-chart="replicas"] svg'), series, live, now, span, [
      ["ready", "ready"],
      ["starting", "starting"],
    ], Math.max(scale.max || 1, 1));
    set(card, "replicas-max", `max ${replicasMax}`);
    const queueMax = drawChart(card.querySelector('[data-chart="queue"] svg'), series, live, now, span, [
      ["queue_depth", "queue"],
      ["in_flight", "in-flight"],
    ], 1);
    set(card, "queue-max", `max ${queueMax}`);
    for (const label of card.querySelectorAll('[data-axis="start"]')) label.textContent = `−${duration(span)}`;
  }

  function duration(seconds) {
    return seconds < 120 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
  }

  // Step lines (the values are counts) over the last `span` seconds, the live value at "now".
  function drawChart(svg, series, live, now, span, lines, floor) {
    const times = series.t || [];
    let top = floor;
    for (const [key] of lines) {
      for (const value of series[key] || []) top = Math.max(top, value);
      top = Math.max(top, live[key] || 0);
    }
    top = niceCeiling(top);
    const x = (t) => Math.max(0, Math.min(W, ((t - (now - span)) / span) * W));
    const y = (v) => H - 3 - (v / top) * (H - 8);
    const parts = [];
    for (const level of [top, top / 2]) {
      parts.push(["path", { class: "grid", d: `M0 ${y(level).toFixed(1)} H${W}`, "vector-effect": "non-scaling-stroke" }]);
    }
    lines.forEach(([key, cls], index) => {
      const values = series[key] || [];
      const points = [];
      times.forEach((t, i) => {
        if (t >= now - span) points.push([x(t), y(values[i] || 0)]);
      });
      points.push([W, y(live[key] || 0)]);
      let d = `M${points[0][0].toFixed(1)} ${points[0][1].toFixed(1)}`;
      for (let i = 1; i < points.length; i++) {
        d += ` H${points[i][0].toFixed(1)} V${points[i][1].toFixed(1)}`;
      }
      if (index === 0) {
        parts.push(["path", { class: `area ${cls}`, d: `${d} V${H} H${points[0][0].toFixed(1)} Z` }]);
      }
      parts.push(["path", { class: `line ${cls}`, d, "vector-effect": "non-scaling-stroke" }]);
    });
    const nodes = parts.map(([tag, attributes]) => {
      const node = document.createElementNS(SVG_NS, tag);
      for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
      return node;
    });
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = lines.map(([key, cls]) => `${cls}: ${live[key] || 0} now`).join(", ");
    svg.replaceChildren(title, ...nodes);
    return top;
  }

  function niceCeiling(value) {
    if (value <= 1) return 1;
    if (value <= 5) return Math.ceil(value);
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * magnitude) return step * magnitude;
    }
    return value;
  }

  function renderEvents(events, now) {
    const list = $("events");
    const recent = events.slice(-MAX_EVENTS).reverse();
    $("no-events").hidden = recent.length > 0;
    $("events-count").textContent = events.length ? `${events.length} recent` : "";
    const items = recent.map((event) => {
      const item = document.createElement("li");
      item.dataset.function = event.function;
      const time = document.createElement("time");
      time.textContent = clock(event.at);
      const fn = document.createElement("span");
      fn.className = "fn";
      fn.textContent = event.function;
      const change = document.createElement("span");
      change.className = `change ${event.to > event.from ? "up" : "down"}`;
      change.textContent = `${event.from} → ${event.to}`;
      const when = document.createElement("span");
      when.className = "ago";
      when.textContent = ago(now - event.at);
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = event.reason;
      reason.title = event.reason;
      item.append(time, fn, change, when, reason);
      return item;
    });
    list.replaceChildren(...items);
  }

  function updateFunctionChoices(names) {
    const select = $("invoke-function");
    const current = [...select.options].map((option) => option.value);
    if (current.join("\n") === names.join("\n")) return;
    const chosen = select.value;
    select.replaceChildren(
      ...names.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }),
    );
    if (names.includes(chosen)) select.value = chosen;
  }

  // -- invoke --------------------------------------------------------------------------

  function parseHeaders(text) {
    const headers = new Headers();
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new Error(`header line "${line.trim()}" is not "Name: value"`);
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    return headers;
  }

  async function invoke(event) {
    event.preventDefault();
    const name = $("invoke-function").value;
    const method = $("invoke-method").value;
    const errorBox = $("invoke-error");
    errorBox.textContent = "";
    if (!name) {
      errorBox.textContent = "choose a function";
      return;
    }
    let headers;
    try {
      headers = parseHeaders($("invoke-headers").value);
    } catch (error) {
      errorBox.textContent = error.message;
      return;
    }
    const body = $("invoke-body").value;
    const init = { method, headers, cache: "no-store" };
    if (method !== "GET" && body !== "") {
      init.body = body;
      if (!headers.has("content-type")) {
        let json = false;
        try {
          JSON.parse(body);
          json = true;
        } catch {
          json = false;
        }
        headers.set("Content-Type", json ? "application/json" : "text/plain; charset=utf-8");
      }
    }
    headers.set("Authorization", `Bearer ${token}`); // the admin token; the gateway strips it
    const path = $("invoke-path").value.trim().replace(/^\/+/, "");
    const query = $("invoke-query").value.trim().replace(/^\?/, "");
    const url =
      `/system/functions/${encodeURIComponent(name)}/invoke` +
      (path ? `/${encodeURI(path)}` : "") +
      (query ? `?${query}` : "");
    const button = $("invoke-send");
    button.disabled = true;
    button.textContent = "Sending…";
    const began = performance.now();
    try {
      const response = await fetch(url, init);
      const text = await readShowing(response, began);
      showResult(response, text, performance.now() - began, false);
    } catch (error) {
      errorBox.textContent = `the call failed: ${error.message}`;
    } finally {
      button.disabled = false;
      button.textContent = "Send";
    }
  }

  // A streamed answer (a generator's, Server-Sent Events) is shown as it arrives.
  async function readShowing(response, began) {
    if (!response.body || !response.body.getReader) {
      return response.text();
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        return text + decoder.decode();
      }
      text += decoder.decode(value, { stream: true });
      showResult(response, text, performance.now() - began, true);
    }
  }

  function showResult(response, text, elapsed, streaming) {
    const status = $("result-status");
    status.textContent = `${response.status} ${response.statusText}`.trim();
    status.dataset.class = String(response.status)[0];
    const callId = response.headers.get("x-call-id");
    const progress = streaming ? " · receiving…" : "";
    $("result-meta").textContent = `${ms(elapsed)}${callId ? ` · call ${callId}` : ""} · ${text.length} bytes${progress}`;
    const rows = [];
    for (const [key, value] of response.headers) {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = key;
      const content = document.createElement("td");
      content.textContent = value;
      row.append(name, content);
      rows.push(row);
    }
    $("result-headers").replaceChildren(...rows);
    $("result-header-count").textContent = String(rows.length);
    let shown = text;
    if (!streaming && (response.headers.get("content-type") || "").includes("json")) {
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        shown = text;
      }
    }
    if (shown.length > MAX_BODY_SHOWN) {
      shown = `${shown.slice(0, MAX_BODY_SHOWN)}\n… (${shown.length - MAX_BODY_SHOWN} more characters)`;
    }
    $("result-body").textContent = shown === "" ? "(empty body)" : shown;
    $("invoke-result").hidden = false;
  }

  // -- wiring --------------------------------------------------------------------------

  function main() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) {
        $("login-message").textContent = "Paste the admin token first.";
        $("login-message").dataset.kind = "error";
        return;
      }
      $("token-input").value = "";
      signIn(value);
    });
    $("forget").addEventListener("click", () =>
      forget("Token forgotten for this tab. Paste it again to reconnect.", "info"),
    );
    $("invoke-form").addEventListener("submit", invoke);
    $("invoke-form").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $("invoke-form").requestSubmit();
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && running) tick(generation);
    });
    window.addEventListener("hashchange", () => {
      const fresh = takeTokenFromFragment();
      if (fresh && fresh !== token) signIn(fresh);
    });

    const stored = takeTokenFromFragment();
    if (stored) {
      signIn(stored);
    } else {
      showLogin(
        "This dashboard reads the gateway's admin API, which needs the admin token.",
        "info",
      );
    }
  }

  main();
})();
