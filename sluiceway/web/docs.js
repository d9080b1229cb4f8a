// The API docs page: renders /openapi.json (the document the routes are built
// from) with no third-party code, so it works offline and under the page's CSP.
// Everything is set with textContent: the document is data, never markup.
import { getApiKey, setApiKey, withAuth } from "./auth.js";

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

// Follow local $refs (#/components/...) so a body's schema is shown in full, once per path.
function resolve(doc, schema, seen = new Set()) {
  if (!schema || typeof schema !== "object") return schema;
  if (Array.isArray(schema)) return schema.map((s) => resolve(doc, s, seen));
  if (typeof schema.$ref === "string" && schema.$ref.startsWith("#/")) {
    if (seen.has(schema.$ref)) return { $ref: schema.$ref };
    const target = schema.$ref.slice(2).split("/").reduce((o, k) => (o ? o[k] : undefined), doc);
    return resolve(doc, target, new Set([...seen, schema.$ref]));
  }
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, resolve(doc, v, seen)]));
}

function typeOf(schema) {
  if (!schema) return "";
  if (schema.enum) return schema.enum.join(" | ");
  return schema.type || (schema.$ref ? schema.$ref.split("/").pop() : "");
}

function operation(doc, method, path, op) {
  const body = el("div", { class: "docs-body" });
  if (op.description) body.append(el("p", { text: op.description }));
  const params = op.parameters || [];
  if (params.length) {
    const table = el("table", {}, el("tr", {}, ...["parameter", "in", "type", ""].map((h) => el("th", { text: h }))));
    for (const p of params) {
      table.append(el("tr", {}, el("td", { class: "docs-path", text: p.name }), el("td", { text: p.in }),
        el("td", { text: typeOf(p.schema) }), el("td", { text: p.required ? "required" : p.description || "" })));
    }
    body.append(table);
  }
  const content = op.requestBody && op.requestBody.content;
  if (content) {
    for (const [media, spec] of Object.entries(content)) {
      body.append(el("p", { text: `Request body (${media})` }),
        el("pre", { text: JSON.stringify(resolve(doc, spec.schema), null, 2) }));
    }
  }
  const rows = Object.entries(op.responses || {}).map(([code, r]) =>
    el("tr", {}, el("td", { text: code }), el("td", { text: r.description || "" })));
  if (rows.length) body.append(el("table", {}, el("tr", {}, el("th", { text: "status" }), el("th", { text: "" })), ...rows));
  const secured = op.security === undefined ? doc.security : op.security;
  body.append(el("p", { class: "docs-muted", text: secured && secured.length ? "Needs an API key (when the server has keys)." : "Public." }));
  const summary = el("summary", {}, el("span", { class: "docs-method", text: method }),
    el("span", { class: "docs-path", text: path }), el("span", { class: "docs-muted", text: op.summary || "" }));
  const details = el("details", { class: "docs-op", "data-search": `${method} ${path} ${op.summary || ""} ${(op.tags || []).join(" ")}`.toLowerCase() }, summary, body);
  return details;
}

function render(doc) {
  $("title").textContent = `${doc.info?.title || "API"} ${doc.info?.version ? "v" + doc.info.version : ""}`;
  $("description").textContent = doc.info?.description || "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!op || typeof op !== "object" || !("responses" in op)) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, method, path, op));
    }
  }
  const ops = $("ops");
  ops.replaceChildren();
  let count = 0;
  for (const [tag, list] of byTag) {
    ops.append(el("h2", { class: "docs-tag", text: tag }), ...list);
    count += list.length;
  }
  $("status").textContent = `${count} operations`;
  document.documentElement.dataset.ready = "docs";
}

async function load() {
  const r = await fetch("openapi.json", { headers: withAuth() });
  if (r.status === 401) {
    $("status").textContent = getApiKey() ? "That key was refused." : "";
    $("key-form").hidden = false;
    document.documentElement.dataset.ready = "key";
    return;
  }
  if (!r.ok) {
    $("status").textContent = `Could not load /openapi.json (${r.status}).`;
    return;
  }
  $("key-form").hidden = true;
  render(await r.json());
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("key").value.trim());
  load();
});

$("filter").addEventListener("input", () => {
  const q = $("filter").value.trim().toLowerCase();
  for (const d of document.querySelectorAll(".docs-op")) d.hidden = q !== "" && !d.dataset.search.includes(q);
});

load();
