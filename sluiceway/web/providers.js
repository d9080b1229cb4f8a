// The Providers page: list the configured providers, add or edit one with a
// form rendered from GET /settings/provider-schema/{kind} (required fields
// first, advanced ones collapsed, secrets as password fields, vendor presets),
// test a form before saving it, delete. After a save the page announces
// `sluiceway:providers-changed` on window so the chat reloads its model
// picker and selects the new provider's model, without a page reload.

import { withAuth } from "./auth.js";

const url = (path) => new URL(path, document.baseURI).toString();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

async function call(method, path, body) {
  const init = { method, headers: withAuth({ accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url(path), init);
  let data = null;
  try {
    data = await resp.json();
  } catch {
    /* empty or not JSON */
  }
  return { ok: resp.ok, status: resp.status, data };
}

const page = {
  root: null,
  list: null,
  formBox: null,
  kinds: [],
  editing: null, // the provider being edited (its view), or null when adding
  schema: null,
  highlight: "",
};

// ------------------------------------------------------------------ list
async function refreshList() {
  const r = await call("GET", "settings/providers");
  page.list.textContent = "";
  if (!r.ok) {
    const msg = r.data?.error?.message || `${r.status}`;
    page.list.append(el("p", { class: "prov-error", text: `Cannot list providers: ${msg}` }));
    return;
  }
  const table = el("table", { class: "prov-table" });
  table.append(el("thead", {}, el("tr", {}, ...["Name", "Kind", "Health", "Models", "", ""].map((t) => el("th", { text: t })))));
  const body = el("tbody");
  for (const p of r.data.data) {
    const row = el("tr", { "data-name": p.name, class: p.name === page.highlight ? "highlight" : "" });
    const name = el("td", {}, el("strong", { text: p.display_name || p.name }));
    if (p.display_name && p.display_name !== p.name) name.append(el("span", { class: "muted", text: ` ${p.name}` }));
    const actions = el("td", { class: "prov-actions" });
    if (p.editable) {
      actions.append(
        el("button", { type: "button", class: "btn ghost", text: "Edit", "data-action": "edit" }),
        el("button", { type: "button", class: "btn ghost", text: "Test", "data-action": "test" }),
      );
      if (p.source === "file") actions.append(el("button", { type: "button", class: "btn ghost danger", text: "Delete", "data-action": "delete" }));
    }
    row.append(name, el("td", { text: p.kind }), el("td", {}, el("span", { class: `health ${p.health}`, text: p.health })),
      el("td", { text: String(p.model_count) }), actions);
    row.append(el("td", { class: "prov-result" }));
    body.append(row);
  }
  table.append(body);
  page.list.append(table);
}

async function onListClick(e) {
  const btn = e.target.closest("button[data-action]");
  if (!btn) return;
  const row = btn.closest("tr");
  const name = row.dataset.name;
  if (btn.dataset.action === "edit") {
    const r = await call("GET", `settings/providers/${encodeURIComponent(name)}`);
    if (r.ok) openForm(r.data);
  } else if (btn.dataset.action === "test") {
    const cell = row.querySelector(".prov-result");
    cell.textContent = "Testing…";
    const r = await call("POST", `settings/providers/${encodeURIComponent(name)}/test`);
    showResult(cell, r);
  } else if (btn.dataset.action === "delete") {
    if (btn.dataset.armed !== "1") {
      btn.dataset.armed = "1";
      btn.textContent = "Confirm";
      return;
    }
    const r = await call("DELETE", `settings/providers/${encodeURIComponent(name)}`);
    if (!r.ok) row.querySelector(".prov-result").textContent = r.data?.error?.message || "delete failed";
    await refreshList();
    window.dispatchEvent(new CustomEvent("sluiceway:providers-changed", { detail: { provider: name, removed: true } }));
  }
}

function showResult(box, r) {
  box.textContent = "";
  box.className = box.className.replace(/ (ok|bad)$/, "");
  if (!r.ok) {
    box.classList.add("bad");
    box.textContent = r.data?.error?.message || `${r.status}`;
    return;
  }
  const d = r.data;
  box.classList.add(d.ok ? "ok" : "bad");
  box.dataset.diagnosis = d.diagnosis;
  box.textContent = `${d.ok ? "✓" : "✗"} ${d.diagnosis}: ${d.message}`;
  if (d.model_count) box.append(el("span", { class: "muted", text: ` · ${d.model_count} model${d.model_count === 1 ? "" : "s"}` }));
}

// ------------------------------------------------------------------ form
function inputFor(f, value) {
  const id = `prov-f-${f.name}`;
  let input;
  if (f.widget === "checkbox") {
    input = el("input", { type: "checkbox", id, checked: value ?? f.default ?? false });
  } else if (f.widget === "list") {
    input = el("textarea", { id, rows: 2, placeholder: "one per line" });
    input.value = Array.isArray(value ?? f.default) ? (value ?? f.default).join("\n") : "";
  } else if (f.widget === "json") {
    input = el("textarea", { id, rows: 2, class: "mono", placeholder: "{}" });
    const v = value ?? f.default;
    input.value = v == null || (typeof v === "object" && !Object.keys(v).length) ? "" : JSON.stringify(v);
  } else {
    const type = f.widget === "password" ? "password" : f.widget === "integer" || f.widget === "number" ? "number" : "text";
    input = el("input", { type, id, autocomplete: "off" });
    if (f.widget === "password") {
      input.placeholder = value ? `saved: ${value} (leave empty to keep)` : "";
    } else {
      input.value = value ?? "";
      if (f.default != null && f.default !== "") input.placeholder = String(f.default);
    }
    if (f.presets?.length) {
      const listId = `${id}-presets`;
      input.setAttribute("list", listId);
      const dl = el("datalist", { id: listId });
      for (const p of f.presets) dl.append(el("option", { value: p }));
      input.after(dl);
      input._datalist = dl;
    }
  }
  input.name = f.name;
  input.dataset.widget = f.widget;
  return input;
}

function fieldRow(f, value) {
  const input = inputFor(f, value);
  const label = el("label", { class: `prov-field${f.required ? " required" : ""}`, htmlFor: input.id },
    el("span", { class: "prov-label", text: f.title + (f.required ? " *" : "") }));
  const wrap = el("div", { class: "prov-row", "data-field": f.name }, label, input);
  if (input._datalist) wrap.append(input._datalist);
  if (f.description) wrap.append(el("small", { class: "muted", text: f.description }));
  wrap.append(el("div", { class: "field-error", role: "alert" }));
  return wrap;
}

async function renderFields(kind, view) {
  const r = await call("GET", `settings/provider-schema/${encodeURIComponent(kind)}`);
  const box = page.formBox.querySelector(".prov-fields");
  box.textContent = "";
  if (!r.ok) {
    box.append(el("p", { class: "prov-error", text: r.data?.error?.message || "cannot load the form" }));
    return;
  }
  page.schema = r.data;
  const values = view ? { ...view.settings, name: view.name, display_name: view.display_name, default_model: view.default_model } : {};
  const presets = page.formBox.querySelector("#prov-preset");
  presets.textContent = "";
  presets.append(el("option", { value: "", text: r.data.presets.length ? "Vendor preset…" : "No presets" }));
  r.data.presets.forEach((p, i) => presets.append(el("option", { value: String(i), text: p.vendor })));
  const advanced = el("details", { class: "prov-advanced" }, el("summary", { text: "Advanced" }));
  for (const f of r.data.fields) {
    const row = fieldRow(f, values[f.name]);
    if (f.name === "name" && view) row.querySelector("input").readOnly = true;
    (f.advanced ? advanced : box).append(row);
  }
  if (advanced.children.length > 1) box.append(advanced);
}

function formBody() {
  const body = { kind: page.formBox.querySelector("#prov-kind").value };
  for (const f of page.schema.fields) {
    const input = page.formBox.querySelector(`[name="${f.name}"]`);
    if (!input) continue;
    const w = input.dataset.widget;
    const raw = w === "checkbox" ? input.checked : input.value.trim();
    if (w === "checkbox") {
      if (raw !== (f.default ?? false)) body[f.name] = raw;
    } else if (raw === "") {
      continue; // empty: the default (or, for a secret, what is saved)
    } else if (w === "list") {
      body[f.name] = raw.split("\n").map((s) => s.trim()).filter(Boolean);
    } else if (w === "json") {
      try {
        body[f.name] = JSON.parse(raw);
      } catch {
        body[f.name] = raw; // the server says what is wrong, next to the field
      }
    } else if (w === "integer" || w === "number") {
      body[f.name] = Number(raw);
    } else {
      body[f.name] = raw;
    }
  }
  return body;
}

function showFieldErrors(r) {
  for (const box of page.formBox.querySelectorAll(".field-error")) box.textContent = "";
  const fields = r.data?.fields || {};
  let first = null;
  for (const [name, msg] of Object.entries(fields)) {
    const box = page.formBox.querySelector(`.prov-row[data-field="${CSS.escape(name)}"] .field-error`);
    if (box) {
      box.textContent = msg;
      first = first || box;
    }
  }
  const status = page.formBox.querySelector(".prov-status");
  status.className = "prov-status bad";
  status.textContent = first ? "Fix the highlighted fields." : r.data?.error?.message || `${r.status}`;
  const details = first?.closest("details");
  if (details) details.open = true;
}

async function testForm() {
  const status = page.formBox.querySelector(".prov-status");
  status.className = "prov-status";
  status.textContent = "Testing…";
  for (const box of page.formBox.querySelectorAll(".field-error")) box.textContent = "";
  const r = await call("POST", "settings/test", formBody());
  if (r.status === 422) return showFieldErrors(r);
  showResult(status, r);
}

async function saveForm() {
  const body = formBody();
  const status = page.formBox.querySelector(".prov-status");
  const r = page.editing
    ? await call("PUT", `settings/providers/${encodeURIComponent(page.editing.name)}`, body)
    : await call("POST", "settings/providers", body);
  if (r.status === 422) return showFieldErrors(r);
  if (!r.ok) {
    status.className = "prov-status bad";
    status.textContent = r.data?.error?.message || `${r.status}`;
    return;
  }
  page.highlight = r.data.name;
  closeForm();
  await refreshList();
  const model = r.data.default_model ? `${r.data.name}/${r.data.default_model}` : "";
  window.dispatchEvent(new CustomEvent("sluiceway:providers-changed", { detail: { provider: r.data.name, model } }));
}

async function openForm(view) {
  page.editing = view || null;
  const f = page.formBox;
  f.hidden = false;
  f.querySelector(".prov-form-title").textContent = view ? `Edit ${view.display_name || view.name}` : "Add a provider";
  const kind = f.querySelector("#prov-kind");
  kind.value = view ? view.kind : kind.value || "openai";
  kind.disabled = !!view;
  f.querySelector(".prov-status").textContent = "";
  await renderFields(kind.value, view);
  f.querySelector('[name="name"]')?.focus();
}

function closeForm() {
  page.formBox.hidden = true;
  page.editing = null;
  page.formBox.querySelector(".prov-fields").textContent = ""; // a typed secret does not linger in the page
}

function applyPreset(e) {
  const p = page.schema?.presets?.[Number(e.target.value)];
  if (!p) return;
  for (const [k, v] of Object.entries(p.settings)) {
    const input = page.formBox.querySelector(`[name="${k}"]`);
    if (input) input.value = v;
  }
  const dm = page.formBox.querySelector('[name="default_model"]');
  if (dm && p.default_model) dm.value = p.default_model;
  const dn = page.formBox.querySelector('[name="display_name"]');
  if (dn && !dn.value) dn.value = p.vendor;
}

// ------------------------------------------------------------------ page
function build() {
  const kinds = el("select", { id: "prov-kind", "aria-label": "Kind" });
  page.formBox = el("form", { class: "prov-form", hidden: true, novalidate: true },
    el("h3", { class: "prov-form-title" }),
    el("div", { class: "prov-row" }, el("label", { htmlFor: "prov-kind", class: "prov-label", text: "Kind" }), kinds),
    el("div", { class: "prov-row" }, el("label", { htmlFor: "prov-preset", class: "prov-label", text: "Preset" }),
      el("select", { id: "prov-preset", "aria-label": "Vendor preset" })),
    el("div", { class: "prov-fields" }),
    el("div", { class: "prov-status", role: "status" }),
    el("div", { class: "editor-actions" },
      el("button", { type: "button", class: "btn ghost", id: "prov-cancel", text: "Cancel" }),
      el("button", { type: "button", class: "btn ghost", id: "prov-test", text: "Test" }),
      el("button", { type: "submit", class: "btn primary", id: "prov-save", text: "Save" })));
  page.list = el("div", { class: "prov-list" });
  page.root = el("section", { class: "providers-page", id: "providers-page", hidden: true, "aria-label": "Providers" },
    el("header", { class: "prov-head" }, el("h2", { text: "Providers" }),
      el("button", { type: "button", class: "btn primary", id: "prov-add", text: "Add provider" }),
      el("button", { type: "button", class: "btn ghost", id: "prov-close", text: "Close" })),
    page.formBox, page.list);
  document.body.append(page.root);
  page.list.addEventListener("click", onListClick);
  page.root.querySelector("#prov-add").addEventListener("click", () => openForm(null));
  page.root.querySelector("#prov-close").addEventListener("click", () => (page.root.hidden = true));
  page.formBox.querySelector("#prov-cancel").addEventListener("click", closeForm);
  page.formBox.querySelector("#prov-test").addEventListener("click", testForm);
  page.formBox.addEventListener("submit", (e) => {
    e.preventDefault();
    saveForm();
  });
  kinds.addEventListener("change", () => renderFields(kinds.value, null));
  page.formBox.querySelector("#prov-preset").addEventListener("change", applyPreset);
}

async function openPage() {
  if (!page.root) build();
  page.root.hidden = false;
  const kinds = page.root.querySelector("#prov-kind");
  if (!page.kinds.length) {
    const r = await call("GET", "settings/provider-kinds");
    if (r.ok) {
      page.kinds = r.data.data;
      for (const k of page.kinds) kinds.append(el("option", { value: k.kind, text: k.title, title: k.description }));
      kinds.value = "openai";
    }
  }
  await refreshList();
}

export function wireProviders() {
  const btn = document.getElementById("open-providers");
  if (btn) btn.addEventListener("click", openPage);
}
