// The Workflows page: the loaded model-compose workflows (GET
// api/workflows?include_schema=true), a form built from each one's input
// variables, and its output as it runs. By default a run is kept like a chat:
// it goes through POST chat/stream to the model workflow/<id> with the form
// as a JSON message, so it is stored as a session (in the sidebar after a
// reload) and can be reattached. Unticked, it is model-compose's POST
// api/workflows/runs with output_only: a streamed output read as SSE chunk by
// chunk, any other output as JSON. Self-wiring: loaded by index.html.

import { withAuth } from "./auth.js";
import { SSEParser } from "./sse.js";

const url = (path) => new URL(path, document.baseURI).toString();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const page = { root: null, list: null, form: null, out: null, status: null, abort: null, workflows: [] };

function build() {
  const close = el("button", { type: "button", class: "btn", text: "Back to chat" });
  close.addEventListener("click", closePage);
  page.list = el("div", { class: "wf-list", role: "list" });
  page.form = el("form", { class: "prov-form wf-form", hidden: true });
  page.status = el("p", { class: "muted wf-status", "aria-live": "polite" });
  page.out = el("pre", { class: "wf-output", "aria-live": "polite", "aria-label": "Workflow output" });
  page.root = el("section", { class: "providers-page workflows-page", hidden: true, "aria-label": "Workflows" },
    el("div", { class: "prov-head" }, el("h2", { text: "Workflows" }), close),
    page.list, page.form, page.status, page.out);
  document.body.append(page.root);
  page.root.addEventListener("keydown", (e) => { if (e.key === "Escape") closePage(); });
}

async function openPage() {
  if (!page.root) build();
  page.root.hidden = false;
  await refresh();
}

function closePage() {
  if (page.abort) page.abort.abort();
  if (page.root) page.root.hidden = true;
}

async function refresh() {
  page.list.textContent = "";
  let resp;
  try {
    resp = await fetch(url("api/workflows?include_schema=true"), { headers: withAuth({ accept: "application/json" }) });
  } catch (e) {
    page.list.append(el("p", { class: "prov-error", text: `Cannot list workflows: ${e}` }));
    return;
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    page.list.append(el("p", { class: "prov-error", text: `Cannot list workflows: ${data?.detail || resp.status}` }));
    return;
  }
  page.workflows = data || [];
  if (!page.workflows.length) {
    page.list.append(el("p", { class: "muted",
      text: "No workflows are loaded. Start the server with --workflows PATH (a model-compose file or folder)." }));
    return;
  }
  for (const wf of page.workflows) {
    const pick = el("button", { type: "button", class: "btn wf-pick", role: "listitem",
      text: wf.title ? `${wf.title} (${wf.workflow_id})` : wf.workflow_id });
    pick.addEventListener("click", () => showForm(wf));
    page.list.append(pick);
  }
  showForm(page.workflows.find((w) => w.default) || page.workflows[0]);
}

function field(v) {
  const id = `wf-in-${v.name}`;
  let input;
  if (v.type === "boolean") {
    input = el("input", { type: "checkbox", id, checked: v.default === true });
  } else if (v.type === "number" || v.type === "integer") {
    input = el("input", { type: "number", id, step: v.type === "integer" ? "1" : "any",
      value: v.default ?? "" });
  } else if (v.type === "text" || v.type === "json" || v.type === "markdown") {
    input = el("textarea", { id, rows: v.type === "text" ? 4 : 3,
      value: v.default == null ? "" : (typeof v.default === "string" ? v.default : JSON.stringify(v.default)) });
  } else {
    input = el("input", { type: "text", id, value: v.default ?? "" });
  }
  input.dataset.name = v.name;
  input.dataset.type = v.type;
  return el("label", { class: "wf-field", for: id }, el("span", { text: `${v.name} ` },
    el("span", { class: "muted", text: v.type })), input);
}

function readInput() {
  const input = {};
  for (const node of page.form.querySelectorAll("[data-name]")) {
    const { name, type } = node.dataset;
    if (type === "boolean") input[name] = node.checked;
    else if (node.value === "") continue; // unset: the workflow's default applies
    else if (type === "number") input[name] = Number(node.value);
    else if (type === "integer") input[name] = parseInt(node.value, 10);
    else if (type === "json") input[name] = JSON.parse(node.value);
    else input[name] = node.value;
  }
  return input;
}

function showForm(wf) {
  page.form.textContent = "";
  page.form.hidden = false;
  page.out.textContent = "";
  page.status.textContent = wf.description || "";
  page.form.append(el("h3", { text: wf.title || wf.workflow_id }));
  for (const v of wf.input || []) page.form.append(field(v));
  const keep = el("input", { type: "checkbox", id: "wf-keep", checked: true });
  page.form.append(el("label", { class: "wf-keep", for: "wf-keep" }, keep,
    el("span", { text: " Keep this run as a chat" })));
  const run = el("button", { type: "submit", class: "btn primary", text: "Run" });
  const stop = el("button", { type: "button", class: "btn", text: "Stop", hidden: true });
  stop.addEventListener("click", () => page.abort?.abort());
  page.form.append(el("div", { class: "prov-actions" }, run, stop));
  page.form.onsubmit = async (e) => {
    e.preventDefault();
    let input;
    try {
      input = readInput();
    } catch (err) {
      page.status.textContent = `Invalid JSON input: ${err.message}`;
      return;
    }
    run.disabled = true;
    stop.hidden = false;
    try {
      await (keep.checked ? runAsChat(wf, input) : runWorkflow(wf, input));
    } finally {
      run.disabled = false;
      stop.hidden = true;
      page.abort = null;
    }
  };
}

async function runWorkflow(wf, input) {
  page.out.textContent = "";
  page.status.textContent = "Running…";
  page.abort = new AbortController();
  const started = performance.now();
  let resp;
  try {
    resp = await fetch(url("api/workflows/runs"), {
      method: "POST", signal: page.abort.signal,
      headers: withAuth({ "content-type": "application/json", accept: "text/event-stream, application/json" }),
      body: JSON.stringify({ workflow_id: wf.workflow_id, input, output_only: true }),
    });
  } catch (e) {
    page.status.textContent = e.name === "AbortError" ? "Stopped." : `Failed: ${e}`;
    return;
  }
  const type = resp.headers.get("content-type") || "";
  if (!type.startsWith("text/event-stream")) {
    const data = await resp.json().catch(() => null);
    if (!resp.ok) {
      page.status.textContent = `Failed (${resp.status}): ${data?.detail || ""}`;
      return;
    }
    page.out.textContent = typeof data === "string" ? data : JSON.stringify(data, null, 2);
    page.status.textContent = `Done in ${Math.round(performance.now() - started)} ms.`;
    return;
  }
  const json = (wf.output || []).some((o) => o.type === "stream" && o.subtype === "json");
  const parser = new SSEParser();
  const reader = resp.body.getReader();
  let failed = "";
  const show = (events) => {
    for (const ev of events) {
      if (ev.event === "error") {
        try { failed = JSON.parse(ev.data).detail; } catch { failed = ev.data; }
      } else {
        page.out.textContent += json ? `${ev.data}\n` : ev.data;
      }
    }
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      show(parser.feed(value));
    }
    show(parser.end());
  } catch (e) {
    page.status.textContent = e.name === "AbortError" ? "Stopped." : `Failed: ${e}`;
    return;
  }
  page.status.textContent = failed ? `Failed mid-stream: ${failed}` : `Done in ${Math.round(performance.now() - started)} ms.`;
}

async function runAsChat(wf, input) {
  page.out.textContent = "";
  page.status.textContent = "Running…";
  page.abort = new AbortController();
  const started = performance.now();
  let resp;
  try {
    resp = await fetch(url("chat/stream"), {
      method: "POST", signal: page.abort.signal,
      headers: withAuth({ "content-type": "application/json", accept: "text/event-stream" }),
      body: JSON.stringify({ model: `workflow/${wf.workflow_id}`, message: JSON.stringify(input) }),
    });
  } catch (e) {
    page.status.textContent = e.name === "AbortError" ? "Stopped." : `Failed: ${e}`;
    return;
  }
  if (!resp.ok) {
    const data = await resp.json().catch(() => null);
    page.status.textContent = `Failed (${resp.status}): ${data?.error?.message || ""}`;
    return;
  }
  const parser = new SSEParser();
  const reader = resp.body.getReader();
  let failed = "";
  let session = "";
  const show = (events) => {
    for (const ev of events) {
      let data;
      try { data = JSON.parse(ev.data); } catch { continue; }
      if (ev.event === "run") session = data.session_id || "";
      else if (data.type === "text-delta") page.out.textContent += data.delta;
      else if (data.type === "error") failed = data.message;
    }
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      show(parser.feed(value));
    }
    show(parser.end());
  } catch (e) {
    page.status.textContent = e.name === "AbortError" ? "Stopped." : `Failed: ${e}`;
    return;
  }
  const kept = session ? ` Kept as chat ${session}.` : "";
  page.status.textContent = failed ? `Failed: ${failed}.${kept}`
    : `Done in ${Math.round(performance.now() - started)} ms.${kept}`;
  page.status.dataset.session = session;
}

function wire() {
  const btn = document.getElementById("open-workflows");
  if (btn) btn.addEventListener("click", openPage);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
else wire();
