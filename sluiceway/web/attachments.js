// Images attached to the next message: the attach button (a file picker),
// paste and drag-and-drop into the composer, thumbnails with a remove button,
// and the size limits. The images are read as data URLs and go with the
// user's turn as OpenAI-style image_url parts (api.js, sessions_api.js).

// Per image: the smallest of the vendors' limits (Anthropic takes 5 MB an image).
export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
// Per message: as base64 (4/3 of the bytes) it stays under the server's
// default request limit (server.max_body_bytes, 16 MiB).
export const MAX_TOTAL_BYTES = 10 * 1024 * 1024;
export const MAX_IMAGES = 8;
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

const fmtSize = (n) =>
  (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`);

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error || new Error("could not read the file"));
    r.readAsDataURL(file);
  });
}

/** Image files among a DataTransfer's items (paste, drop); [] when there are none. */
export function imageFiles(dt) {
  return [...(dt?.files || [])].filter((f) => f.type.startsWith("image/"));
}

export class Attachments {
  /** tray: where thumbnails go; notice: where a refusal is said (role=alert); onChange: after add/remove. */
  constructor({ tray, notice, onChange } = {}) {
    this.tray = tray;
    this.notice = notice;
    this.onChange = onChange;
    this.items = []; // {id, name, size, url}
    this.seq = 0;
  }

  get count() {
    return this.items.length;
  }

  /** Check and read `files`; refused ones are named in the notice. Resolves when the accepted ones are shown. */
  async add(files) {
    const problems = [];
    let total = this.items.reduce((n, it) => n + it.size, 0);
    const accepted = [];
    for (const f of files) {
      const name = f.name || "pasted image";
      if (!IMAGE_TYPES.includes(f.type)) {
        problems.push(`“${name}” is not a PNG, JPEG, GIF or WebP image.`);
      } else if (f.size > MAX_IMAGE_BYTES) {
        problems.push(`“${name}” is ${fmtSize(f.size)}: images can be at most ${fmtSize(MAX_IMAGE_BYTES)} each.`);
      } else if (this.items.length + accepted.length >= MAX_IMAGES) {
        problems.push(`“${name}” was not added: at most ${MAX_IMAGES} images per message.`);
      } else if (total + f.size > MAX_TOTAL_BYTES) {
        problems.push(`“${name}” was not added: the images of one message can be at most ` +
          `${fmtSize(MAX_TOTAL_BYTES)} together.`);
      } else {
        total += f.size;
        accepted.push(f);
      }
    }
    for (const f of accepted) {
      try {
        this.items.push({ id: ++this.seq, name: f.name || "pasted image", size: f.size, url: await readAsDataURL(f) });
      } catch (e) {
        problems.push(`“${f.name}” could not be read: ${e.message || e}`);
      }
    }
    this.say(problems.join(" "));
    this.render();
    this.onChange?.();
  }

  remove(id) {
    const i = this.items.findIndex((it) => it.id === id);
    if (i < 0) return;
    const [gone] = this.items.splice(i, 1);
    this.say("");
    this.render();
    this.onChange?.();
    // keep the keyboard where it was: the next thumbnail's remove button, else the previous one's
    const buttons = this.tray.querySelectorAll(".thumb-remove");
    (buttons[Math.min(i, buttons.length - 1)] || this.textarea)?.focus();
    return gone;
  }

  /** The data URLs to send, and an empty tray. */
  take() {
    const urls = this.items.map((it) => it.url);
    this.items = [];
    this.say("");
    this.render();
    return urls;
  }

  say(text) {
    if (!this.notice) return;
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  render() {
    this.tray.textContent = "";
    this.tray.hidden = !this.items.length;
    this.items.forEach((it, i) => {
      const fig = document.createElement("figure");
      fig.className = "thumb";
      const img = document.createElement("img");
      img.src = it.url;
      img.alt = it.name;
      const cap = document.createElement("figcaption");
      cap.textContent = `${it.name} · ${fmtSize(it.size)}`;
      const rm = document.createElement("button");
      rm.type = "button";
      rm.className = "thumb-remove";
      rm.textContent = "×";
      rm.title = "Remove";
      rm.setAttribute("aria-label", `Remove image ${i + 1}: ${it.name}`);
      rm.addEventListener("click", () => this.remove(it.id));
      fig.title = `${it.name} · ${fmtSize(it.size)}`;
      fig.append(img, cap, rm);
      this.tray.append(fig);
    });
  }

  /**
   * Wire the composer: the attach button opens the (hidden) file input, an
   * image pasted into the message box or dropped on `dropZone` is attached.
   */
  wire({ button, input, textarea, dropZone }) {
    this.textarea = textarea;
    button.addEventListener("click", () => input.click());
    input.addEventListener("change", async () => {
      const files = [...input.files];
      input.value = ""; // the same file can be chosen again after a remove
      await this.add(files);
      textarea.focus();
    });
    textarea.addEventListener("paste", (e) => {
      const files = imageFiles(e.clipboardData);
      if (!files.length) return; // text pastes as usual
      e.preventDefault();
      this.add(files);
    });
    const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
    dropZone.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      dropZone.classList.add("dragging");
    });
    dropZone.addEventListener("dragleave", (e) => {
      if (!dropZone.contains(e.relatedTarget)) dropZone.classList.remove("dragging");
    });
    dropZone.addEventListener("drop", (e) => {
      dropZone.classList.remove("dragging");
      if (!hasFiles(e)) return;
      e.preventDefault();
      this.add([...e.dataTransfer.files]);
      textarea.focus();
    });
  }
}

/** The images of a sent message, as thumbnails in its turn. */
export function messageImages(urls) {
  const box = document.createElement("div");
  box.className = "msg-images";
  urls.forEach((url, i) => {
    const img = document.createElement("img");
    img.src = url;
    img.alt = `Attached image ${i + 1} of ${urls.length}`;
    img.loading = "lazy";
    box.append(img);
  });
  return box;
}
