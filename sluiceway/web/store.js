// Conversations, kept in this browser (localStorage) until the server's
// sessions API takes over. The methods are async and speak in whole sessions
// so a server-backed store can replace this one without touching the UI.

const KEY = "sluiceway.sessions.v1";

export const newId = (prefix) =>
  `${prefix}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

export class LocalSessionStore {
  constructor(storage = window.localStorage) {
    this.storage = storage;
    this.sessions = new Map();
    try {
      for (const s of JSON.parse(storage.getItem(KEY) || "[]")) this.sessions.set(s.id, s);
    } catch (e) {
      console.warn("sluiceway: stored sessions are unreadable; starting afresh", e);
    }
  }

  _flush() {
    try {
      this.storage.setItem(KEY, JSON.stringify([...this.sessions.values()]));
    } catch (e) {
      console.warn("sluiceway: could not save sessions", e); // quota, private mode
    }
  }

  /** Newest first. */
  async list() {
    return [...this.sessions.values()].sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async get(id) {
    return this.sessions.get(id) || null;
  }

  async create(settings = {}) {
    const now = Date.now();
    const s = { id: newId("ses"), title: "", createdAt: now, updatedAt: now, settings: { ...settings }, messages: [] };
    this.sessions.set(s.id, s);
    this._flush();
    return s;
  }

  async rename(id, title) {
    const s = this.sessions.get(id);
    if (!s) return;
    s.title = title;
    s.updatedAt = Date.now();
    this._flush();
  }

  async remove(id) {
    this.sessions.delete(id);
    this._flush();
  }

  /** Persist a session after the UI changed it (messages, settings). */
  async save(session) {
    session.updatedAt = Date.now();
    this.sessions.set(session.id, session);
    this._flush();
  }
}
