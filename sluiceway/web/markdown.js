// Markdown for model output: marked (parse) → DOMPurify (sanitise) with
// highlight.js for code. Raw HTML in the output is shown as text, never
// rendered, and DOMPurify still checks every fragment (javascript: links,
// event handlers) before it reaches the page.
//
// Rendering is incremental: the text is split into top-level blocks and only
// the blocks whose source changed since the last frame are rebuilt, so a
// streamed answer grows without flicker and a finished code block keeps its
// DOM (and the user's selection) while the rest streams on.

let engine = null; // {marked, purify, hljs}
let live = false; // rendering a block that is still streaming: no language auto-detection (too slow per frame)
const vendor = (name) => new URL(`../vendor/${name}`, import.meta.url).toString();

const escapeHtml = (s) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function highlight(hljs, code, lang) {
  if (!hljs) return escapeHtml(code);
  try {
    if (lang && hljs.getLanguage(lang)) return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    if (!live && code.length < 20000) return hljs.highlightAuto(code).value;
  } catch {
    /* fall through to plain */
  }
  return escapeHtml(code);
}

/** Load the libraries once. Resolves to true when markdown is available. */
export async function loadMarkdown() {
  if (engine) return true;
  let marked, purify, hljs;
  try {
    [{ marked }, { default: purify }] = await Promise.all([import(vendor("marked.js")), import(vendor("purify.js"))]);
  } catch (e) {
    console.warn(
      "sluiceway: the markdown libraries are not installed (run `npm ci --prefix sluiceway/web`); " +
        "showing replies as plain text.",
      e,
    );
    return false;
  }
  try {
    ({ default: hljs } = await import(vendor("highlight.js")));
  } catch (e) {
    console.warn("sluiceway: highlight.js is not installed; code blocks are not highlighted.", e);
  }
  marked.use({
    gfm: true,
    renderer: {
      html: ({ text }) => escapeHtml(text),
      code({ text, lang }) {
        const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
        const label = language ? ` data-lang="${escapeHtml(language)}"` : "";
        const cls = language ? ` language-${escapeHtml(language)}` : "";
        return `<pre${label}><code class="hljs${cls}">${highlight(hljs, text, language)}</code></pre>\n`;
      },
    },
  });
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
  engine = { marked, purify, hljs };
  return true;
}

export const markdownAvailable = () => engine !== null;

const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "iframe", "svg", "math"],
  FORBID_ATTR: ["style", "id", "name"],
  RETURN_DOM_FRAGMENT: true,
};

function renderBlock(token, links, streaming) {
  const list = [token];
  list.links = links;
  live = streaming;
  let html;
  try {
    html = engine.marked.parser(list);
  } finally {
    live = false;
  }
  const frag = engine.purify.sanitize(html, PURIFY);
  for (const pre of frag.querySelectorAll("pre")) decorateCode(pre);
  return frag;
}

/** A header with the language and a copy button over each code block (clicks are delegated). */
function decorateCode(pre) {
  const wrap = document.createElement("div");
  wrap.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const lang = document.createElement("span");
  lang.textContent = pre.dataset.lang || "text";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.textContent = "Copy";
  copy.title = "Copy code";
  head.append(lang, copy);
  pre.replaceWith(wrap);
  wrap.append(head, pre);
}

export class MarkdownView {
  constructor(el) {
    this.el = el;
    this.blocks = []; // [{raw, nodes, live}]
    this.text = null;
    this.final = false;
  }

  /** Show `text`; `final` once it stops growing (the last block then gets its full treatment). */
  set(text, final = true) {
    if (text === this.text && final === this.final) return;
    this.text = text;
    this.final = final;
    if (!engine) {
      this.el.classList.add("plain");
      this.el.textContent = text;
      return;
    }
    const tokens = engine.marked.lexer(text);
    // Blocks before the first changed one keep their DOM; the last block is
    // always rebuilt because it is the one still growing.
    let same = 0;
    const kept = (b, t) => b.raw === t.raw && !b.live; // a block drawn while streaming is redrawn once it is done
    while (same < tokens.length - 1 && same < this.blocks.length && kept(this.blocks[same], tokens[same])) same++;
    for (const b of this.blocks.splice(same)) for (const n of b.nodes) n.remove();
    for (let i = same; i < tokens.length; i++) {
      const streaming = !final && i === tokens.length - 1;
      const frag = renderBlock(tokens[i], tokens.links, streaming);
      const nodes = [...frag.childNodes];
      this.el.append(frag);
      this.blocks.push({ raw: tokens[i].raw, nodes, live: streaming });
    }
  }
}

/** Copy text, with a fallback for pages that are not a secure context. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = document.createElement("textarea");
    ta.value = text;
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}
