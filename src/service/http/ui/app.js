// Job Ledger dashboard: plain JavaScript, no build step. It calls the same HTTP API as any
// client, with the bearer token the person pasted (kept in sessionStorage for this tab),
// and follows the events stream (fetch-based Server-Sent Events, so the token travels in
// the Authorization header, never in a URL). Everything from the server is rendered with
// textContent, never as HTML.
"use strict";

const API = "/api/v1";
const ENDPOINTS = {
  stats: () => `${API}/stats`,
  jobs: (query) => `${API}/jobs?${query}`,
  job: (id) => `${API}/jobs/${id}`,
  history: (id) => `${API}/jobs/${id}/events`,
  verify: (id) => `${API}/audit/verify?job_id=${id}`,
  cancel: (id) => `${API}/jobs/${id}/cancel`,
  retry: (id) => `${API}/jobs/${id}/retry`,
  bulk: (kind) => `${API}/jobs/${kind}`,
  stream: (query) => `${API}/events/stream?${query}`,
  queues: () => `${API}/queues`,
  pause: (name) => `${API}/queues/${encodeURIComponent(name)}/pause`,
  resume: (name) => `${API}/queues/${encodeURIComponent(name)}/resume`,
  schedules: () => `${API}/schedules`,
  schedulePause: (id) => `${API}/schedules/${encodeURIComponent(id)}/pause`,
  scheduleResume: (id) => `${API}/schedules/${encodeURIComponent(id)}/resume`,
  scheduleRecent: (id) => `${API}/schedules/${encodeURIComponent(id)}/slots/recent?limit=5`,
  workflows: () => `${API}/workflows?limit=10`,
  workflow: (id) => `${API}/workflows/${id}`,
  webhooks: () => `${API}/webhooks`,
  webhook: (id) => `${API}/webhooks/${id}`,
  webhookDeliveries: (id) => `${API}/webhooks/${id}/deliveries?limit=20`,
  deliveryAttempts: (id) => `${API}/webhooks/deliveries/${id}/attempts`,
};
const TOKEN_KEY = "job-ledger.token";
const STATUSES = ["pending", "processing", "retrying", "completed", "failed", "cancelled", "blocked", "skipped"];
const PAGE_SIZE = 20;
// Bulk actions on the filtered list (POST /api/v1/jobs/retry|cancel): the statuses each
// takes, and the most one request changes.
const BULK = { retry: ["failed", "cancelled"], cancel: ["pending", "retrying", "processing"] };
const BULK_LIMIT = 1000;

const $ = (id) => document.getElementById(id);
const state = {
  token: null, scopes: new Set(), subject: "",
  filters: {}, cursors: [null], page: 0, nextCursor: null,
  rows: new Map(), selected: null, stream: null,
  serverNow: null, lastEventId: null, polling: null,
  workflow: null, workflowJobs: new Set(),
};

// -- the token ---------------------------------------------------------------------------

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

function can(scope) {
  // As the server decides: admin grants every scope but tenants:admin.
  return state.scopes.has(scope) || (state.scopes.has("admin") && scope !== "tenants:admin");
}

function signIn(token) {
  const c = claims(token);
  state.token = token;
  state.subject = c.sub || "";
  state.scopes = new Set(String(c.scope || c.scp || "").split(/\s+/).filter(Boolean));
  sessionStorage.setItem(TOKEN_KEY, token);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  if (state.stream) state.stream.abort();
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("tenant").textContent = "";
  $("tenant").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setLive(false);
}

// -- HTTP --------------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(url, options = {}) {
  const response = await fetch(url, {
    ...options,
    headers: { Accept: "application/json", Authorization: `Bearer ${state.token}`, ...(options.headers || {}) },
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    signOut("The token was refused (expired or invalid). Paste a new one.");
    throw new Problem(401, body);
  }
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

// -- rendering helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

function badge(status) {
  return el("span", { class: `status ${status}`, "data-status": status }, status);
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// -- overview: counts and throughput -------------------------------------------------------

async function loadStats() {
  const stats = await api(ENDPOINTS.stats());
  state.serverNow = stats.now;
  // The tenant the server resolved (the claim's name is the server's setting, so the page
  // does not read it from the token).
  $("tenant").textContent = `tenant ${stats.tenant}`;
  $("tenant").hidden = !stats.tenant;
  const counts = $("status-counts");
  counts.replaceChildren(
    ...STATUSES.map((s) =>
      el("div", { class: `count ${s}`, "data-testid": `count-${s}` },
        el("div", { class: "n" }, stats.by_status[s] ?? 0), el("div", { class: "label" }, s)))
  );
  const table = $("queues");
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "queue"), ...STATUSES.map((s) => el("th", {}, s)), el("th", {}, "total")));
  table.tBodies[0].replaceChildren(
    ...stats.by_queue.map((q) =>
      el("tr", { "data-queue": q.queue }, el("td", {}, q.queue), ...STATUSES.map((s) => el("td", {}, q.counts[s] ?? 0)), el("td", {}, q.total)))
  );
  drawChart(stats.throughput);
}

function drawChart(minutes) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 600, height = 160, pad = 22;
  const peak = Math.max(1, ...minutes.map((m) => Math.max(m.completed + m.failed, m.submitted)));
  const step = (width - pad) / Math.max(1, minutes.length);
  const y = (v) => height - pad - (v / peak) * (height - 2 * pad);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const total = minutes.reduce((sum, m) => sum + m.completed + m.failed, 0);
  svg.setAttribute("aria-label", `${total} jobs finished in the last hour`);
  svg.dataset.finished = String(total);
  const add = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  add("line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, stroke: "#d0d5dd" });
  add("text", { x: 0, y: pad - 6, "font-size": 11, fill: "#667085" }).textContent = String(peak);
  minutes.forEach((m, i) => {
    const x = pad + i * step + 1, w = Math.max(1, step - 2);
    if (m.completed) add("rect", { x, y: y(m.completed), width: w, height: y(0) - y(m.completed), fill: "#16a34a" }).append(title(`${m.completed} completed at ${when(m.minute)}`));
    if (m.failed) add("rect", { x, y: y(m.completed + m.failed), width: w, height: y(0) - y(m.failed), fill: "#dc2626" }).append(title(`${m.failed} failed at ${when(m.minute)}`));
  });
  const points = minutes.map((m, i) => `${pad + i * step + step / 2},${y(m.submitted)}`).join(" ");
  add("polyline", { points, fill: "none", stroke: "#94a3b8", "stroke-width": 1.5 });
  const first = minutes[0], last = minutes[minutes.length - 1];
  if (first) add("text", { x: pad, y: height - 6, "font-size": 11, fill: "#667085" }).textContent = new Date(first.minute).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
  if (last) add("text", { x: width - 40, y: height - 6, "font-size": 11, fill: "#667085" }).textContent = "now";
  $("chart").replaceChildren(svg);

  function title(text) {
    const t = document.createElementNS(ns, "title");
    t.textContent = text;
    return t;
  }
}

// -- queues: limits, state, pause and resume --------------------------------------------------

function rateText(rate) {
  if (!rate) return "\u2013";
  return `${rate.limit} per ${rate.period_seconds}s (burst ${rate.burst})`;
}

function limitText(value) {
  return value === null || value === undefined ? "\u2013" : String(value);
}

function queueRow(queue) {
  const mode = queue.paused ? "paused" : "active";
  const cells = [
    el("td", {}, queue.name),
    el("td", { "data-testid": "queue-state" }, el("span", { class: `qstate ${mode}` }, mode)),
    el("td", { "data-testid": "queue-concurrency" }, limitText(queue.concurrency)),
    el("td", { "data-testid": "queue-rate" }, rateText(queue.rate_limit)),
    el("td", { "data-testid": "queue-per-key" }, limitText(queue.per_key_concurrency)),
    el("td", { "data-testid": "queue-fairness" }, queue.fairness),
    el("td", { "data-testid": "queue-pending" }, queue.counts.pending ?? 0),
    el("td", { "data-testid": "queue-running" }, queue.running),
    el("td", { class: "muted" }, queue.updated_by ? `v${queue.version} by ${queue.updated_by}` : "never configured"),
  ];
  const action = el("td", {});
  if (state.scopes.has("admin")) {
    const kind = queue.paused ? "resume" : "pause";
    const button = el("button", { type: "button", "data-testid": `queue-${kind}` }, queue.paused ? "Resume" : "Pause");
    button.addEventListener("click", () => actOnQueue(kind, queue.name, button));
    action.append(button);
  }
  return el("tr", { "data-queue-name": queue.name, "data-paused": String(queue.paused) }, ...cells, action);
}

async function loadQueues() {
  const listed = await api(ENDPOINTS.queues());
  $("queue-rows").replaceChildren(...listed.queues.map(queueRow));
  if (!listed.queues.length) $("queue-rows").append(el("tr", {}, el("td", { colSpan: 10 }, "No queues yet.")));
}

async function actOnQueue(kind, name, button) {
  button.disabled = true;
  $("queue-action-result").textContent = "";
  try {
    await api(ENDPOINTS[kind](name), { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    await loadQueues();
  } catch (error) {
    $("queue-action-result").textContent = `${kind} ${name} refused: ${error.message}`;
    button.disabled = false;
  }
}

// -- schedules: next slot, last outcomes, pause and resume ----------------------------------

function whenText(spec) {
  return spec.cron ? `cron ${spec.cron} (${spec.timezone || "UTC"})` : `every ${spec.interval_seconds}s`;
}

function slotText(slot) {
  const at = new Date(slot.slot).toISOString().replace("T", " ").slice(0, 19);
  if (slot.outcome === "fired") return `${at} fired (${slot.status || "gone"})`;
  if (slot.outcome === "skipped") return `${at} skipped: ${slot.reason}`;
  return `${at} ${slot.outcome}`;
}

function scheduleRow(schedule, recent) {
  const mode = schedule.paused ? "paused" : "active";
  const outcomes = el("td", { "data-testid": "schedule-last" });
  for (const slot of recent) outcomes.append(el("div", { class: `slot ${slot.outcome}`, "data-outcome": slot.outcome }, slotText(slot)));
  if (!recent.length) outcomes.append(el("span", { class: "muted" }, "none yet"));
  const next = schedule.next_slot ? new Date(schedule.next_slot).toISOString().replace("T", " ").slice(0, 19) : "\u2013";
  const cells = [
    el("td", {}, schedule.id),
    el("td", { "data-testid": "schedule-state" }, el("span", { class: `qstate ${mode}` }, mode)),
    el("td", {}, whenText(schedule.spec)),
    el("td", {}, schedule.spec.job.type),
    el("td", { "data-testid": "schedule-next" }, next),
    outcomes,
    el("td", { class: "muted" }, `v${schedule.version} by ${schedule.updated_by}${schedule.note ? `: ${schedule.note}` : ""}`),
  ];
  const action = el("td", {});
  if (can("schedules:write")) {
    const kind = schedule.paused ? "resume" : "pause";
    const button = el("button", { type: "button", "data-testid": `schedule-${kind}` }, schedule.paused ? "Resume" : "Pause");
    button.addEventListener("click", () => actOnSchedule(kind, schedule.id, button));
    action.append(button);
  }
  return el("tr", { "data-schedule-id": schedule.id, "data-paused": String(schedule.paused) }, ...cells, action);
}

async function loadSchedules() {
  const listed = await api(ENDPOINTS.schedules());
  const shown = listed.schedules.slice(0, 50);
  const recent = await Promise.all(shown.map((s) => api(ENDPOINTS.scheduleRecent(s.id)).then((r) => r.slots, () => [])));
  $("schedule-rows").replaceChildren(...shown.map((s, i) => scheduleRow(s, recent[i])));
  if (!shown.length) $("schedule-rows").append(el("tr", {}, el("td", { colSpan: 8 }, "No schedules yet.")));
}

async function actOnSchedule(kind, id, button) {
  button.disabled = true;
  $("schedule-action-result").textContent = "";
  const url = kind === "pause" ? ENDPOINTS.schedulePause(id) : ENDPOINTS.scheduleResume(id);
  const note = kind === "pause" ? { note: `paused from the dashboard by ${state.subject}` } : {};
  try {
    await api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(note) });
    await loadSchedules();
  } catch (error) {
    $("schedule-action-result").textContent = `${kind} ${id} refused: ${error.message}`;
    button.disabled = false;
  }
}

// -- the job list --------------------------------------------------------------------------

function jobQuery(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const [key, value] of Object.entries(state.filters)) if (value) query.set(key, value);
  if (cursor) query.set("cursor", cursor);
  return query.toString();
}

function jobRow(job) {
  const row = el("tr", { "data-job-id": job.job_id, "data-testid": "job-row" },
    el("td", {}, el("code", {}, job.job_id.slice(0, 8))),
    el("td", {}, job.type),
    el("td", {}, job.queue),
    el("td", { "data-testid": "job-status" }, badge(job.status)),
    el("td", {}, `${job.attempt}/${job.max_attempts}`),
    el("td", {}, when(job.created_at)),
    el("td", {}, when(job.completed_at)));
  row.addEventListener("click", () => openJob(job.job_id));
  if (job.job_id === state.selected) row.classList.add("selected");
  return row;
}

async function loadJobs() {
  const page = await api(ENDPOINTS.jobs(jobQuery(state.cursors[state.page])));
  state.nextCursor = page.next_cursor;
  state.rows = new Map(page.jobs.map((job) => [job.job_id, job]));
  $("job-rows").replaceChildren(...page.jobs.map(jobRow));
  if (!page.jobs.length) $("job-rows").append(el("tr", {}, el("td", { colSpan: 7 }, "No jobs match.")));
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.nextCursor;
  $("page-info").textContent = `page ${state.page + 1}`;
  renderBulk();
}

function renderBulk() {
  // A "… all matching" button for a list filtered by a status the action takes, for a token
  // with the single-job action's scope.
  const status = state.filters.status;
  $("bulk-retry").hidden = !(can("jobs:write") && BULK.retry.includes(status));
  $("bulk-cancel").hidden = !(can("jobs:cancel") && BULK.cancel.includes(status));
}

async function actOnMatching(kind) {
  const filter = {};
  for (const [key, value] of Object.entries(state.filters)) if (value) filter[key] = value;
  const described = Object.entries(filter).map(([k, v]) => `${k} ${v}`).join(", ");
  if (!window.confirm(`${kind === "retry" ? "Retry" : "Cancel"} up to ${BULK_LIMIT} jobs matching ${described}?`)) return;
  const button = $(`bulk-${kind}`);
  button.disabled = true;
  $("bulk-result").textContent = "";
  try {
    const done = await api(ENDPOINTS.bulk(kind), {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": `ui-${Date.now()}-${Math.random().toString(36).slice(2)}` },
      body: JSON.stringify({ filter, limit: BULK_LIMIT }),
    });
    const verb = kind === "retry" ? "Retried" : "Cancelled";
    $("bulk-result").textContent = `${verb} ${done.changed} of ${done.matched} matching jobs (request ${done.request_id})`;
    await Promise.all([loadJobs(), loadStats()]);
  } catch (error) {
    $("bulk-result").textContent = `${kind} refused: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function refreshJob(jobId) {
  const job = await api(ENDPOINTS.job(jobId));
  const existing = document.querySelector(`tr[data-job-id="${CSS.escape(jobId)}"]`);
  if (existing) {
    state.rows.set(jobId, job);
    existing.replaceWith(jobRow(job));
  }
  return job;
}

// -- workflows: the list, and one workflow's graph (columns by depth, SVG lines) ---------

async function loadWorkflows() {
  const listed = await api(ENDPOINTS.workflows());
  $("workflow-rows").replaceChildren(...listed.workflows.map((w) => {
    const row = el("tr", { "data-workflow-id": w.id, "data-testid": "workflow-row" },
      el("td", {}, el("code", {}, w.id.slice(0, 8))),
      el("td", {}, badge(w.status)), el("td", {}, w.jobs),
      el("td", {}, when(w.submitted_at)), el("td", {}, w.submitted_by));
    row.addEventListener("click", () => openWorkflow(w.id));
    if (w.id === state.workflow) row.classList.add("selected");
    return row;
  }));
  if (!listed.workflows.length) $("workflow-rows").append(el("tr", {}, el("td", { colSpan: 5 }, "No workflows yet.")));
}

async function openWorkflow(id) {
  state.workflow = id;
  document.querySelectorAll("tr[data-workflow-id].selected").forEach((r) => r.classList.remove("selected"));
  document.querySelector(`tr[data-workflow-id="${CSS.escape(id)}"]`)?.classList.add("selected");
  $("workflow").hidden = false;
  await renderWorkflow(id);
}

async function renderWorkflow(id) {
  const workflow = await api(ENDPOINTS.workflow(id));
  if (state.workflow !== id) return;
  state.workflowJobs = new Set(workflow.jobs.map((j) => j.job_id));
  $("workflow").dataset.workflowId = id;
  $("workflow-id").textContent = id;
  $("workflow-status").replaceChildren(badge(workflow.status));
  $("workflow-status").dataset.status = workflow.status;
  $("workflow-graph").replaceChildren(drawGraph(workflow.jobs));
}

function depths(jobs) {
  // Each job's column: 0 without dependencies, else one more than its deepest dependency.
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const depth = new Map();
  const visit = (name, seen = new Set()) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0;  // never: the server refuses cycles
    seen.add(name);
    const deps = byName.get(name)?.depends_on || [];
    const d = deps.length ? 1 + Math.max(...deps.map((n) => visit(n, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  jobs.forEach((j) => visit(j.name));
  return depth;
}

function drawGraph(jobs) {
  const ns = "http://www.w3.org/2000/svg";
  const colW = 170, rowH = 44, nodeW = 140, nodeH = 30, pad = 10;
  const depth = depths(jobs);
  const columns = [];
  for (const job of jobs) (columns[depth.get(job.name)] ||= []).push(job);
  const at = new Map();
  columns.forEach((column, c) => column.forEach((job, r) => at.set(job.name, { x: pad + c * colW, y: pad + r * rowH })));
  const width = pad * 2 + Math.max(1, columns.length) * colW - (colW - nodeW);
  const height = pad * 2 + Math.max(1, ...columns.map((c) => c.length)) * rowH - (rowH - nodeH);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `workflow of ${jobs.length} jobs`);
  const add = (parent, tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    parent.append(node);
    return node;
  };
  for (const job of jobs) {
    const to = at.get(job.name);
    for (const dep of job.depends_on) {
      const from = at.get(dep);
      if (!from) continue;
      const x1 = from.x + nodeW, y1 = from.y + nodeH / 2, x2 = to.x, y2 = to.y + nodeH / 2, mid = (x1 + x2) / 2;
      add(svg, "path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "data-from": dep, "data-to": job.name });
    }
  }
  for (const job of jobs) {
    const { x, y } = at.get(job.name);
    const g = add(svg, "g", { class: `node ${job.status}`, "data-name": job.name, "data-job-id": job.job_id, "data-status": job.status, "data-testid": "workflow-node" });
    add(g, "rect", { x, y, width: nodeW, height: nodeH });
    const label = add(g, "text", { x: x + 8, y: y + nodeH / 2 + 4 });
    label.textContent = `${job.name.length > 14 ? `${job.name.slice(0, 13)}\u2026` : job.name} \u00b7 ${job.status}`;
    add(g, "title", {}).textContent = `${job.name}: ${job.status}${job.error ? ` (${job.error})` : ""}`;
    g.addEventListener("click", () => openJob(job.job_id));
  }
  return svg;
}

// -- webhooks: endpoints with their state and recent deliveries; a job's deliveries ---------

// The endpoints as last listed (for a delivery's URL), the endpoint open below the list, and
// the deliveries shown in the open job's timeline (their attempts redraw it).
const hooks = { endpoints: new Map(), open: null, jobDeliveries: new Set() };

function hookTarget(d) {
  if (d.url) return d.url;
  const endpoint = hooks.endpoints.get(d.endpoint_id);
  return endpoint ? endpoint.url : `endpoint ${String(d.endpoint_id).slice(0, 8)}`;
}

function millis(ms) {
  return ms < 10 ? `${Number(ms.toFixed(1))} ms` : `${Math.round(ms)} ms`;
}

function answerText(statusCode, error) {
  if (statusCode !== null && statusCode !== undefined) return `HTTP ${statusCode}`;
  return error ? `error: ${error}` : "";
}

function attemptText(a) {
  let text = `${a.outcome}: ${answerText(a.status_code, a.error) || "no answer"} in ${millis(a.duration_ms)}`;
  if (a.next_attempt_at) text += `; next attempt ${when(a.next_attempt_at)}`;
  return text;
}

function deliveryText(d) {
  const last = answerText(d.last_status_code, d.last_error);
  let text = d.attempts ? `${d.status} after ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}` : d.status;
  if (last) text += `, last ${last}`;
  if (d.next_attempt_at) text += `; ${d.attempts ? "next" : "first"} attempt ${when(d.next_attempt_at)}`;
  return text;
}

// The job's deliveries (GET /jobs/{id} carries them) appended to its timeline, each
// followed by its attempts: outcome, status code, duration, next attempt.
async function renderJobDeliveries(jobId, deliveries) {
  hooks.jobDeliveries = new Set(deliveries.map((d) => d.delivery_id));
  const attempts = await Promise.all(deliveries.map((d) =>
    api(ENDPOINTS.deliveryAttempts(d.delivery_id)).then((r) => r.attempts, () => [])));
  if (state.selected !== jobId) return;
  const list = $("timeline");
  list.querySelectorAll("li.webhook").forEach((li) => li.remove());
  deliveries.forEach((d, i) => {
    list.append(el("li", { class: `webhook ${d.status}`, "data-type": "webhook.delivery", "data-delivery-id": d.delivery_id, "data-status": d.status, "data-testid": "job-delivery" },
      el("strong", {}, `webhook ${d.event_type}`), " ", el("span", { class: "actor" }, `to ${hookTarget(d)}`),
      el("span", { class: "when" }, when(d.created_at)),
      el("div", { class: "why" }, deliveryText(d))));
    for (const a of attempts[i]) {
      list.append(el("li", { class: `webhook attempt ${a.outcome}`, "data-type": "webhook.delivery_attempted.v1", "data-delivery-id": d.delivery_id, "data-outcome": a.outcome, "data-testid": "job-delivery-attempt" },
        el("strong", {}, `attempt ${a.attempt}`), " ", el("span", { class: "actor" }, `by ${a.actor}`),
        el("span", { class: "when" }, when(a.at)),
        el("div", { class: "why" }, attemptText(a))));
    }
  });
}

function endpointRow(e) {
  const mode = e.disabled ? "disabled" : "active";
  const action = el("td", {});
  if (e.disabled && can("webhooks:write")) {
    const button = el("button", { type: "button", "data-testid": "webhook-enable" }, "Enable");
    button.addEventListener("click", (click) => {
      click.stopPropagation();
      enableEndpoint(e, button);
    });
    action.append(button);
  }
  const row = el("tr", { "data-endpoint-id": e.endpoint_id, "data-disabled": String(e.disabled), "data-testid": "webhook-row" },
    el("td", {}, e.url, ...(e.description ? [el("div", { class: "reason" }, e.description)] : [])),
    el("td", {}, e.events.join(", ")),
    el("td", { "data-testid": "webhook-state" }, el("span", { class: `qstate ${mode}` }, mode),
      ...(e.disabled && e.disabled_reason ? [el("span", { class: "reason" }, e.disabled_reason)] : [])),
    el("td", { class: "muted" }, `v${e.version} by ${e.updated_by}`),
    action);
  row.addEventListener("click", () => openEndpoint(e.endpoint_id));
  if (e.endpoint_id === hooks.open) row.classList.add("selected");
  return row;
}

async function loadWebhooks() {
  const listed = await api(ENDPOINTS.webhooks());
  hooks.endpoints = new Map(listed.endpoints.map((e) => [e.endpoint_id, e]));
  $("webhook-rows").replaceChildren(...listed.endpoints.map(endpointRow));
  if (!listed.endpoints.length) $("webhook-rows").append(el("tr", {}, el("td", { colSpan: 5 }, "No webhook endpoints.")));
  if (hooks.open) await renderEndpoint(hooks.open);
}

async function openEndpoint(id) {
  hooks.open = id;
  document.querySelectorAll("tr[data-endpoint-id].selected").forEach((r) => r.classList.remove("selected"));
  document.querySelector(`tr[data-endpoint-id="${CSS.escape(id)}"]`)?.classList.add("selected");
  $("webhook").hidden = false;
  await renderEndpoint(id);
}

async function renderEndpoint(id) {
  let listed;
  try {
    listed = await api(ENDPOINTS.webhookDeliveries(id));
  } catch (error) {
    if (error.status !== 404) throw error;
    return closeEndpoint();  // deleted meanwhile
  }
  if (hooks.open !== id) return;
  $("webhook").dataset.endpointId = id;
  $("webhook-endpoint-id").textContent = id;
  $("webhook-delivery-rows").replaceChildren(...listed.deliveries.map((d) => {
    const job = el("td", {}, d.job_id ? el("code", {}, d.job_id.slice(0, 8)) : "\u2013");
    if (d.job_id) {
      job.classList.add("link");
      job.addEventListener("click", () => openJob(d.job_id));
    }
    return el("tr", { "data-delivery-id": d.delivery_id, "data-status": d.status, "data-testid": "webhook-delivery" },
      el("td", {}, when(d.created_at)), el("td", {}, d.event_type), job,
      el("td", { "data-testid": "delivery-status" }, d.status),
      el("td", { "data-testid": "delivery-attempts" }, d.attempts),
      el("td", { "data-testid": "delivery-answer" }, answerText(d.last_status_code, d.last_error)),
      el("td", {}, when(d.last_attempt_at)),
      el("td", {}, when(d.next_attempt_at)));
  }));
  if (!listed.deliveries.length) $("webhook-delivery-rows").append(el("tr", {}, el("td", { colSpan: 8 }, "No deliveries yet.")));
}

function closeEndpoint() {
  hooks.open = null;
  $("webhook").hidden = true;
  document.querySelectorAll("tr[data-endpoint-id].selected").forEach((r) => r.classList.remove("selected"));
}

async function enableEndpoint(endpoint, button) {
  button.disabled = true;
  $("webhook-action-result").textContent = "";
  try {
    await api(ENDPOINTS.webhook(endpoint.endpoint_id), {
      method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ disabled: false }),
    });
    await loadWebhooks();
  } catch (error) {
    $("webhook-action-result").textContent = `enable ${endpoint.url} refused: ${error.message}`;
    button.disabled = false;
  }
}

const refreshWebhooks = debounce(() => loadWebhooks().catch(() => {}), 300);

// An endpoint's or a delivery's event: the panel follows it, and so does the open job's
// timeline when it shows that delivery.
function onWebhookEvent(event) {
  refreshWebhooks();
  if (state.selected && hooks.jobDeliveries.has(event.job_id)) renderDetail(state.selected).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  $("close-webhook").addEventListener("click", closeEndpoint);
});

// -- one job's detail ------------------------------------------------------------------------

function field(name, value, pre = false) {
  return [el("dt", {}, name), el("dd", {}, pre ? el("pre", {}, JSON.stringify(value, null, 2)) : value ?? "")];
}

async function openJob(jobId) {
  state.selected = jobId;
  document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
  document.querySelector(`tr[data-job-id="${CSS.escape(jobId)}"]`)?.classList.add("selected");
  $("action-result").textContent = "";
  $("detail").hidden = false;
  await renderDetail(jobId);
  $("detail").scrollIntoView({ block: "nearest" });
}

async function renderDetail(jobId) {
  const [job, history, verdict] = await Promise.all([
    api(ENDPOINTS.job(jobId)),
    api(ENDPOINTS.history(jobId)).catch((e) => ({ error: e })),
    api(ENDPOINTS.verify(jobId)).catch((e) => ({ error: e })),
  ]);
  if (state.selected !== jobId) return;
  $("detail").dataset.jobId = jobId;
  $("detail-id").textContent = job.job_id;
  $("detail-status").replaceChildren(badge(job.status));
  $("detail-status").dataset.status = job.status;
  $("detail-fields").replaceChildren(
    ...field("type", job.type), ...field("queue", job.queue), ...field("priority", job.priority),
    ...field("attempt", `${job.attempt} of ${job.max_attempts}`),
    ...(job.snoozes ? field("snoozes", String(job.snoozes)) : []),
    ...field("submitted", when(job.created_at)), ...field("started", when(job.started_at)),
    ...field("finished", when(job.completed_at)),
    ...(job.next_attempt_at ? field("next attempt", when(job.next_attempt_at)) : []),
    ...(job.error ? field("error", job.error) : []),
    ...(job.unique_key ? field("unique key", job.unique_key) : []),
    ...field("payload", job.payload, true),
    ...(job.result !== null && job.result !== undefined ? field("result", job.result, true) : []));
  renderTimeline(history);
  renderChain(verdict);
  const cancel = $("cancel"), retry = $("retry");
  cancel.hidden = !can("jobs:cancel");
  retry.hidden = !can("jobs:write");
  cancel.disabled = !["pending", "processing", "retrying"].includes(job.status);
  retry.disabled = !["failed", "cancelled"].includes(job.status);
  await renderJobDeliveries(jobId, job.webhook_deliveries || []);
}

function eventsOf(history) {
  if (Array.isArray(history)) return history;
  return history.events || history.items || [];
}

function renderTimeline(history) {
  const list = $("timeline");
  if (history.error) {
    list.replaceChildren(el("li", {}, `timeline unavailable: ${history.error.message}`));
    return;
  }
  list.replaceChildren(...eventsOf(history).map((e) => {
    const kind = String(e.type).replace(/^job\./, "").replace(/\.v\d+$/, "");
    // Why it happened, in words: the server's note, the `why:` line `ledger replay` prints.
    const note = e.note;
    return el("li", { class: kind, "data-type": e.type },
      el("strong", {}, `v${e.version} ${kind}`), " ", el("span", { class: "actor" }, `by ${e.actor}`),
      el("span", { class: "when" }, when(e.occurred_at)),
      ...(note ? [el("div", { class: "why" }, note)] : []));
  }));
}

function renderChain(verdict) {
  const mark = $("chain");
  if (verdict.error) {
    mark.className = "chain";
    mark.textContent = verdict.error.status === 403 ? "chain: needs audit:read" : "chain: not checked";
    mark.dataset.verified = "unknown";
    return;
  }
  const ok = verdict.ok ?? verdict.verified ?? (verdict.broken ? verdict.broken.length === 0 : false);
  mark.className = `chain ${ok ? "ok" : "broken"}`;
  mark.dataset.verified = ok ? "true" : "false";
  mark.textContent = ok ? "\u2714 chain verified" : `\u2718 chain broken${verdict.broken?.[0]?.version ? ` at v${verdict.broken[0].version}` : ""}`;
}

async function act(kind) {
  const jobId = state.selected;
  const button = $(kind);
  button.disabled = true;
  $("action-result").textContent = "";
  try {
    await api(ENDPOINTS[kind](jobId), { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    await Promise.all([renderDetail(jobId), refreshJob(jobId), loadStats()]);
  } catch (error) {
    $("action-result").textContent = `${kind} refused: ${error.message}`;
    button.disabled = false;
  }
}

// -- live updates: the events stream -------------------------------------------------------

function setLive(on, text) {
  const live = $("live");
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = text || (on ? "live" : "offline");
  live.dataset.connected = on ? "true" : "false";
}

function poll() {
  // Without the audit:read scope there is no events stream: refresh every few seconds.
  setLive(false, "polling");
  if (state.polling) return;
  state.polling = setInterval(() => {
    if (!state.token) return clearInterval(state.polling);
    loadStats().catch(() => {});
    loadQueues().catch(() => {});
    loadSchedules().catch(() => {});
    loadJobs().catch(() => {});
    loadWorkflows().catch(() => {});
    loadWebhooks().catch(() => {});
    if (state.selected) renderDetail(state.selected).catch(() => {});
    if (state.workflow) renderWorkflow(state.workflow).catch(() => {});
  }, 5000);
}

const refreshStats = debounce(() => loadStats().catch(() => {}), 500);
const refreshList = debounce(() => loadJobs().catch(() => {}), 300);
const refreshQueues = debounce(() => loadQueues().catch(() => {}), 500);
const refreshSchedules = debounce(() => loadSchedules().catch(() => {}), 500);
const refreshWorkflows = debounce(() => loadWorkflows().catch(() => {}), 500);
const refreshWorkflow = debounce(() => {
  if (state.workflow) renderWorkflow(state.workflow).catch(() => {});
}, 200);

function onEvent(event) {
  if (String(event.type).startsWith("webhook.")) return onWebhookEvent(event);
  const jobId = event.job_id;
  refreshStats();
  refreshQueues();
  if (String(event.type).startsWith("schedule.")) return refreshSchedules();
  if (!jobId || String(event.type).startsWith("queue.")) return;
  // A workflow's jobs change its status (and its list row); the open one is redrawn.
  if (state.workflowJobs.has(jobId)) refreshWorkflow();
  if (state.workflowJobs.has(jobId) || String(event.type).startsWith("job.submitted")) refreshWorkflows();
  if (state.rows.has(jobId)) refreshJob(jobId).catch(() => {});
  else if (state.page === 0 && String(event.type).startsWith("job.submitted")) refreshList();
  if (state.selected === jobId) renderDetail(jobId).catch(() => {});
}

function streamQuery() {
  // Resume after the last event seen; the first time, only what happens from now on
  // (the server's clock, from the stats, less a margin: an overlap only refreshes twice).
  if (state.lastEventId) return new URLSearchParams({ after: state.lastEventId }).toString();
  const since = new Date(Date.parse(state.serverNow || new Date().toISOString()) - 5000);
  return new URLSearchParams({ since: since.toISOString() }).toString();
}

async function follow() {
  let delay = 500;
  if (!can("audit:read")) return poll();
  while (state.token) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const response = await fetch(ENDPOINTS.stream(streamQuery()), {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${state.token}` },
        signal: controller.signal,
      });
      if (response.status === 401) return signOut("The token was refused (expired or invalid).");
      if (response.status === 403 || response.status === 404) return poll();
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      setLive(true);
      delay = 500;
      await readEvents(response.body, onEvent);
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const id = block.split("\n").find((l) => l.startsWith("id:"));
      if (id) state.lastEventId = id.slice(3).trim();
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      try {
        handle(JSON.parse(data));
      } catch {
        // not an event of ours (a comment or keep-alive): ignore it
      }
    }
  }
}

// -- wiring ----------------------------------------------------------------------------------

async function start() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = `${state.subject} \u00b7 ${[...state.scopes].join(" ")}`;
  try {
    await Promise.all([loadStats(), loadQueues(), loadSchedules(), loadJobs(), loadWorkflows(), loadWebhooks()]);
  } catch (error) {
    if (error.status !== 401) $("login-error").textContent = error.message;
    return;
  }
  follow();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    state.filters = { status: form.get("status"), type: form.get("type").trim(), queue: form.get("queue").trim() };
    state.cursors = [null];
    state.page = 0;
    loadJobs();
  });
  $("filters").addEventListener("reset", () => {
    state.filters = {};
    state.cursors = [null];
    state.page = 0;
    setTimeout(loadJobs);
  });
  $("next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors[state.page + 1] = state.nextCursor;
    state.page += 1;
    loadJobs();
  });
  $("prev").addEventListener("click", () => {
    if (state.page === 0) return;
    state.page -= 1;
    loadJobs();
  });
  $("close-detail").addEventListener("click", () => {
    state.selected = null;
    $("detail").hidden = true;
    document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
  });
  $("close-workflow").addEventListener("click", () => {
    state.workflow = null;
    state.workflowJobs = new Set();
    $("workflow").hidden = true;
    document.querySelectorAll("tr[data-workflow-id].selected").forEach((r) => r.classList.remove("selected"));
  });
  $("cancel").addEventListener("click", () => act("cancel"));
  $("retry").addEventListener("click", () => act("retry"));
  $("bulk-retry").addEventListener("click", () => actOnMatching("retry"));
  $("bulk-cancel").addEventListener("click", () => actOnMatching("cancel"));

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    signIn(saved);
    start();
  } else {
    signOut();
  }
});
