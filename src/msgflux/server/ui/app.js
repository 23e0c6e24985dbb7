// The msgflux dashboard: reads the admin JSON API of the server that serves it, nothing else.
// The admin key lives in this tab's sessionStorage only. Every value from the API is written
// with textContent (never parsed as HTML). No library, no build step.
"use strict";

const KEY = "msgflux.adminKey";
const SVG = "http://www.w3.org/2000/svg";
let timer = null;
let refreshEvery = 3000;

// -- small helpers ----------------------------------------------------------------------------
function $(id) {
  return document.getElementById(id);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function time(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  return new Date(epoch * 1000).toLocaleTimeString();
}

function when(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  return new Date(epoch * 1000).toISOString().slice(0, 19).replace("T", " ");
}

function num(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits === undefined ? 0 : digits);
}

function usd(value) {
  if (value === null || value === undefined) return "–";
  return "$" + Number(value).toFixed(value < 1 ? 4 : 2);
}

// -- the API ----------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || response.statusText;
    throw new ApiError(response.status, message);
  }
  return data;
}

// -- login ------------------------------------------------------------------------------------
function showLogin(message) {
  clearTimeout(timer);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "";
}

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
}

// -- gateways ---------------------------------------------------------------------------------
function deploymentRow(gateway, d) {
  const lastError = d.last_error ? d.last_error.type + " at " + time(d.last_error.at) : "–";
  const reopens = d.breaker === "open" && d.reopens_at ? " (probe " + time(d.reopens_at) + ")" : "";
  return el(
    "tr",
    { "data-gateway": gateway, "data-deployment": d.name, class: "status-" + (d.status || "unknown") },
    el("td", {}, d.name),
    el("td", { class: "muted" }, d.model),
    el("td", { class: "status" }, d.status || "–"),
    el("td", { class: "breaker breaker-" + (d.breaker || "unknown") }, (d.breaker || "–") + reopens),
    el("td", { class: "num" }, num(d.in_flight)),
    el("td", { class: "num" }, d.p50_ms === null ? "–" : num(d.p50_ms, 1) + " ms"),
    el("td", { class: "num" }, d.p95_ms === null ? "–" : num(d.p95_ms, 1) + " ms"),
    el("td", { class: "num" }, d.error_rate === null ? "–" : num(d.error_rate * 100, 1) + "%"),
    el("td", { class: "window" }, d.window || "always"),
    el("td", { class: "muted" }, lastError),
  );
}

function renderGateways(gateways) {
  const box = $("gateways");
  box.replaceChildren();
  const names = Object.keys(gateways);
  if (!names.length) box.append(el("p", { class: "muted" }, "No gateways configured."));
  for (const name of names) {
    const g = gateways[name];
    const title = el("h3", {}, name + " ", el("span", { class: "badge status-" + g.status }, g.status),
      el("span", { class: "muted" }, " " + g.type));
    const headers = ["deployment", "model", "status", "breaker", "in flight", "p50", "p95",
      "errors", "time window", "last error"];
    box.append(el("div", { class: "gateway", "data-gateway": name }, title,
      table(headers, g.deployments.map((d) => deploymentRow(name, d)))));
  }
}

// -- charts -----------------------------------------------------------------------------------
function bars(values, kind, label) {
  const width = 240;
  const height = 40;
  const max = Math.max(...values, 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "chart " + kind, role: "img",
  });
  const title = svg("title", {});
  title.textContent = label;
  chart.append(title);
  const step = width / values.length;
  values.forEach((value, i) => {
    if (!value) return;
    const h = Math.max(1, (value / max) * (height - 2));
    chart.append(svg("rect", {
      x: (i * step).toFixed(2), y: (height - h).toFixed(2),
      width: Math.max(1, step - 1).toFixed(2), height: h.toFixed(2),
    }));
  });
  return chart;
}

function chartRow(kind, name, series) {
  const requests = series.requests.reduce((a, b) => a + b, 0);
  const errors = series.errors.reduce((a, b) => a + b, 0);
  const spend = series.spend.reduce((a, b) => a + b, 0);
  return el("div", { class: "chart-row", "data-series": kind + ":" + name },
    el("div", { class: "chart-name" }, name, el("span", { class: "muted" }, " " + kind)),
    el("div", {}, bars(series.requests, "requests", name + ": requests per minute"),
      el("div", { class: "muted" }, requests + " requests, " + errors + " failed (per minute, last 60)")),
    el("div", {}, bars(series.spend, "spend", name + ": spend per minute"),
      el("div", { class: "muted" }, usd(spend) + " spent")));
}

function renderCharts(activity) {
  const box = $("charts");
  box.replaceChildren();
  $("activity-note").textContent = activity.shared ? "(every process)" : "(this process)";
  const rows = [];
  for (const [name, s] of Object.entries(activity.gateways)) rows.push(chartRow("gateway", name, s));
  for (const [name, s] of Object.entries(activity.keys)) rows.push(chartRow("key", name, s));
  if (!rows.length) box.append(el("p", { class: "muted" }, "No requests in the last hour."));
  box.append(...rows);
  renderFailures(activity.failures);
}

function renderFailures(failures) {
  const box = $("failures");
  box.replaceChildren();
  if (!failures.length) {
    box.append(el("p", { class: "muted" }, "None in the last hour."));
    return;
  }
  const rows = failures.map((f) => el("tr", {},
    el("td", {}, time(f.at)),
    el("td", {}, f.gateway),
    el("td", {}, f.key),
    el("td", {}, f.error ? f.status + " " + f.error : "answered after fallback"),
    el("td", {}, el("ol", { class: "attempts" }, ...f.attempts.map((a) => el("li", {},
      a.deployment + ": " + (a.skipped ? "skipped, " + a.skipped
        : a.error ? a.error + (a.status ? " (" + a.status + ")" : "") : "ok") +
      " · " + num(a.duration_ms, 1) + " ms"))))));
  box.append(table(["time", "gateway", "key", "outcome", "attempts"], rows));
}

// -- keys -------------------------------------------------------------------------------------
function meter(used, limit) {
  if (limit === null || limit === undefined) return el("span", { class: "muted" }, "–");
  const value = used === null || used === undefined ? 0 : used;
  const share = limit > 0 ? Math.min(1, value / limit) : 0;
  const bar = svg("svg", { viewBox: "0 0 60 8", class: "meter" + (share >= 1 ? " full" : "") });
  bar.append(svg("rect", { x: 0, y: 0, width: 60, height: 8, class: "meter-bg" }));
  bar.append(svg("rect", { x: 0, y: 0, width: (60 * share).toFixed(1), height: 8 }));
  return el("span", {}, bar, " " + value + " / " + limit);
}

function budgetCell(key) {
  if (!key.budget) return el("span", { class: "muted" }, "–");
  const spent = key.usage ? key.usage.spent_usd : null;
  const share = spent ? Math.min(1, spent / key.budget.usd) : 0;
  const bar = svg("svg", { viewBox: "0 0 60 8", class: "meter" + (share >= 1 ? " full" : "") });
  bar.append(svg("rect", { x: 0, y: 0, width: 60, height: 8, class: "meter-bg" }));
  bar.append(svg("rect", { x: 0, y: 0, width: (60 * share).toFixed(1), height: 8 }));
  return el("span", {}, bar, " " + usd(spent || 0) + " / " + usd(key.budget.usd) + " per " +
    key.budget.period);
}

function actions(key) {
  if (key.read_only) return el("span", { class: "muted" }, "config file");
  if (key.status === "revoked") return el("span", { class: "muted" }, "revoked " + time(key.revoked_at));
  const rotate = el("button", { type: "button", class: "rotate" }, "Rotate");
  rotate.addEventListener("click", () => keyAction(key.name, "rotate"));
  const revoke = el("button", { type: "button", class: "revoke danger" }, "Revoke");
  revoke.addEventListener("click", () => {
    if (revoke.dataset.armed) keyAction(key.name, "revoke");
    else {
      revoke.dataset.armed = "1";
      revoke.textContent = "Confirm revoke";
    }
  });
  return el("span", {}, rotate, " ", revoke);
}

function renderKeys(data) {
  const s = data.storage;
  $("storage-note").textContent = s.durable ? "(in Redis: every worker and instance)"
    : "(in this process's memory: lost at restart)";
  const usage = (k) => k.usage || {};
  const rows = data.keys.map((k) => el("tr", { "data-key": k.name, class: "key-" + k.status },
    el("td", {}, k.name, k.admin ? el("span", { class: "badge" }, "admin") : null),
    el("td", { class: "muted" }, k.source),
    el("td", { class: "key-status" }, k.status),
    el("td", {}, Array.isArray(k.models) ? k.models.join(", ") : k.models),
    el("td", {}, meter(usage(k).requests_last_minute, k.rpm)),
    el("td", {}, meter(usage(k).tokens_last_minute, k.tpm)),
    el("td", {}, meter(usage(k).in_flight, k.max_concurrency)),
    el("td", {}, budgetCell(k)),
    el("td", { class: "muted" }, k.expires_at ? when(k.expires_at) : "–"),
    el("td", { class: "muted" }, k.metadata ? Object.entries(k.metadata).map(([a, b]) => a + "=" + b).join(" ") : ""),
    el("td", {}, actions(k))));
  $("keys").replaceChildren(table(["key", "source", "status", "models", "rpm", "tpm",
    "in flight", "budget", "expires (UTC)", "metadata", ""], rows));
}

function showSecret(name, secret) {
  $("secret-name").textContent = name;
  $("secret-value").textContent = secret;
  $("secret").hidden = false;
}

async function keyAction(name, action) {
  $("keys-error").textContent = "";
  try {
    const out = await api("POST", "/admin/keys/" + encodeURIComponent(name) + "/" + action, {});
    if (out.secret) showSecret(name, out.secret);
  } catch (err) {
    $("keys-error").textContent = err.message;
  }
  refresh();
}

function positive(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

async function createKey(event) {
  event.preventDefault();
  $("keys-error").textContent = "";
  const models = $("create-models").value.trim();
  const body = {
    name: $("create-name").value.trim(),
    models: models === "*" || models === "" ? "*" : models.split(",").map((m) => m.trim()).filter(Boolean),
  };
  for (const [field, id] of [["rpm", "create-rpm"], ["tpm", "create-tpm"], ["max_concurrency", "create-concurrency"]]) {
    const value = positive(id);
    if (value !== undefined) body[field] = value;
  }
  const budget = positive("create-budget");
  if (budget !== undefined) body.budget = { usd: budget, period: $("create-period").value };
  const team = $("create-team").value.trim();
  if (team) body.metadata = { team };
  try {
    const out = await api("POST", "/admin/keys", body);
    showSecret(out.key.name, out.secret);
    $("create-form").reset();
  } catch (err) {
    $("keys-error").textContent = err.message;
  }
  refresh();
}

// -- audit ------------------------------------------------------------------------------------
function renderAudit(data) {
  const rows = data.entries.map((e) => el("tr", {},
    el("td", {}, when(e.at)),
    el("td", {}, e.actor),
    el("td", {}, e.action),
    el("td", {}, e.key),
    el("td", { class: "muted" }, JSON.stringify(e.changes))));
  $("audit").replaceChildren(rows.length ? table(["time (UTC)", "who", "what", "key", "changes"], rows)
    : el("p", { class: "muted" }, "No changes yet."));
}

// -- the refresh loop -------------------------------------------------------------------------
async function refresh() {
  clearTimeout(timer);
  try {
    const [dashboard, keys, audit] = await Promise.all([
      api("GET", "/admin/dashboard"),
      api("GET", "/admin/keys"),
      api("GET", "/admin/audit?limit=20"),
    ]);
    showMain();
    refreshEvery = (dashboard.refresh || 3) * 1000;
    renderGateways(dashboard.gateways);
    renderCharts(dashboard.activity);
    renderKeys(keys);
    renderAudit(audit);
    $("status").textContent = "updated " + time(dashboard.at) + " · pid " + dashboard.pid;
    $("status").dataset.at = String(dashboard.at);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      sessionStorage.removeItem(KEY);
      showLogin(err.message);
      return;
    }
    $("status").textContent = "cannot reach the server: " + err.message;
  }
  timer = setTimeout(refresh, refreshEvery);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("admin-key").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    $("admin-key").value = "";
    refresh();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showLogin("");
  });
  $("create-form").addEventListener("submit", createKey);
  $("secret-done").addEventListener("click", () => {
    $("secret-value").textContent = "";
    $("secret").hidden = true;
  });
  if (sessionStorage.getItem(KEY)) refresh();
  else showLogin("");
});
