// DOM for one message. Model output only ever reaches the page as text nodes
// or through MarkdownView (DOMPurify); our own markup (icons) is constant.

import { messageImages } from "./attachments.js";
import { ICONS } from "./icons.js";
import { MarkdownView } from "./markdown.js";

export function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text != null) el.textContent = text;
  return el;
}

export function actionButton(icon, label, action) {
  const b = h("button", "act");
  b.type = "button";
  b.dataset.action = action;
  b.title = label;
  b.setAttribute("aria-label", label);
  b.innerHTML = ICONS[icon];
  return b;
}

export function userMessageEl(msg) {
  const el = h("article", "msg user");
  el.dataset.id = msg.id;
  el.dataset.role = "user";
  const bubble = h("div", "bubble", msg.content);
  bubble.hidden = !msg.content; // an image alone
  const actions = h("div", "actions");
  actions.append(
    actionButton("edit", "Edit and resend", "edit"),
    actionButton("copy", "Copy", "copy"),
  );
  if (msg.images?.length) el.append(messageImages(msg.images));
  el.append(bubble, actions);
  return el;
}

const fmtMs = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);
const fmtNum = (n) => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n));

/**
 * An assistant reply; while it streams, updates are applied once per animation
 * frame. `decorateTool(card, call, msg)` may add to a tool call's card (the
 * calls this page cannot run: toolcalls.js).
 */
export class AssistantView {
  constructor(msg, { onFrame, decorateTool } = {}) {
    this.msg = msg;
    this.onFrame = onFrame;
    this.decorateTool = decorateTool;
    this.frame = 0;
    this.el = h("article", "msg assistant");
    this.el.dataset.id = msg.id;
    this.el.dataset.role = "assistant";
    this.avatar = h("div", "avatar");
    this.body = h("div", "body");
    this.content = h("div", "content markdown");
    this.md = new MarkdownView(this.content);
    this.typing = h("div", "typing");
    this.typing.setAttribute("aria-label", "Assistant is typing");
    this.typing.append(h("span"), h("span"), h("span"));
    this.typing.hidden = true;
    this.tools = h("div", "tools");
    this.footer = h("footer", "meta");
    this.body.append(this.typing, this.content, this.tools, this.footer);
    this.el.append(this.avatar, this.body);
    this.render();
  }

  showTyping(on) {
    this.typing.hidden = !on;
  }

  /** Schedule a render for the next animation frame (coalescing any number of deltas). */
  update() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
      this.onFrame?.();
    });
  }

  /** Render now (history, and the final state of a stream). */
  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.render();
    this.onFrame?.();
  }

  render() {
    const m = this.msg;
    this.el.dataset.status = m.status || "complete";
    this.el.classList.toggle("streaming", m.status === "streaming");
    if (m.reasoning) this._reasoning(m);
    this.md.set(m.content || "", m.status !== "streaming");
    this.content.hidden = !m.content;
    this._tools(m.toolCalls || []);
    this._error(m);
    this._footer(m);
  }

  _reasoning(m) {
    if (!this.thinking) {
      this.thinking = h("details", "reasoning");
      this.thinking.open = m.status === "streaming";
      this.thinkingSummary = h("summary");
      this.thinkingText = h("div", "reasoning-text");
      this.thinking.append(this.thinkingSummary, this.thinkingText);
      this.body.insertBefore(this.thinking, this.typing.nextSibling);
    }
    const live = m.status === "streaming" && !m.content && !(m.toolCalls || []).length;
    if (this.wasThinking && !live && m.status === "streaming") this.thinking.open = false; // answer began: fold it away
    this.wasThinking = live;
    this.thinking.classList.toggle("live", live);
    const secs = m.reasoningMs >= 100 ? ` for ${(m.reasoningMs / 1000).toFixed(1)} s` : "";
    this.thinkingSummary.textContent = live ? "Thinking…" : `Thought${secs}`;
    if (this.thinkingText.textContent !== m.reasoning) this.thinkingText.textContent = m.reasoning;
  }

  _tools(calls) {
    while (this.tools.children.length < calls.length) {
      const card = h("div", "tool-card");
      const head = h("div", "tool-head");
      head.insertAdjacentHTML("afterbegin", ICONS.tool);
      head.append(h("span", "tool-name"), h("span", "tool-state"));
      card.append(head, h("pre", "tool-args"), h("pre", "tool-result"));
      this.tools.append(card);
    }
    calls.forEach((c, i) => {
      const card = this.tools.children[i];
      card.dataset.name = c.name || "";
      card.querySelector(".tool-name").textContent = c.name || "tool";
      const streaming = this.msg.status === "streaming";
      card.querySelector(".tool-state").textContent = streaming ? "calling…" : "call";
      let args = c.arguments || "";
      if (!streaming) {
        try {
          args = JSON.stringify(JSON.parse(args), null, 2);
        } catch {
          /* show it as sent */
        }
      }
      const pre = card.querySelector(".tool-args");
      if (pre.textContent !== args) pre.textContent = args;
      const result = (this.msg.toolResults || []).find((r) => r.id && r.id === c.id);
      const out = card.querySelector(".tool-result");
      if (result) {
        card.querySelector(".tool-state").textContent = result.isError ? "failed" : "done";
        card.classList.toggle("failed", !!result.isError);
      }
      const text = result ? result.output : "";
      if (out.textContent !== text) out.textContent = text;
      card.dataset.callId = c.id || "";
      if (!streaming) this.decorateTool?.(card, c, this.msg);
    });
  }

  _error(m) {
    const text = m.status === "error" ? m.error || "Something went wrong" : "";
    if (!text) {
      this.errorEl?.remove();
      this.errorEl = null;
      return;
    }
    if (!this.errorEl) {
      this.errorEl = h("div", "error");
      this.errorEl.setAttribute("role", "alert");
      this.errorEl.insertAdjacentHTML("afterbegin", ICONS.alert);
      this.errorEl.append(h("span", "error-text"));
      const retry = h("button", "retry", "Retry");
      retry.type = "button";
      retry.dataset.action = "retry";
      this.errorEl.append(retry);
      this.body.insertBefore(this.errorEl, this.footer);
    }
    this.errorEl.querySelector(".error-text").textContent = text;
  }

  _footer(m) {
    this.footer.textContent = "";
    if (m.status === "streaming") return;
    const stats = h("div", "stats");
    const add = (text, title, cls = "") => {
      const s = h("span", `stat ${cls}`, text);
      if (title) s.title = title;
      stats.append(s);
    };
    if (m.model) add(m.model, "Model", "model");
    if (m.provider && !(m.model || "").startsWith(`${m.provider}/`)) add(`via ${m.provider}`, "Provider");
    if (m.status === "stopped") add("stopped", "You stopped this reply", "badge");
    const x = m.metrics || {};
    if (x.ttftMs != null) add(`${fmtMs(x.ttftMs)} TTFT`, "Time to first token");
    if (x.tokPerSec != null) add(`${x.tokPerSec.toFixed(1)} tok/s`, "Output tokens per second after the first token");
    if (x.completionTokens != null) {
      const est = x.estimated ? "~" : "";
      const prompt = x.promptTokens != null ? `${fmtNum(x.promptTokens)} in · ` : "";
      add(`${prompt}${est}${fmtNum(x.completionTokens)} out`, x.estimated ? "Estimated (no usage reported)" : "Tokens");
    }
    const actions = h("div", "actions");
    actions.append(
      actionButton("copy", "Copy", "copy"),
      actionButton("refresh", "Regenerate", "regenerate"),
      actionButton("bug", "Debug trace (raw upstream request and response)", "trace"),
    );
    this.footer.append(stats, actions);
  }
}
