// The API key this browser sends, when the server requires one. Kept in
// localStorage (this browser only) and sent as `Authorization: Bearer`.

const KEY = "sluiceway.apiKey";

export function getApiKey() {
  try {
    return localStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY, key);
    else localStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the key lasts until the page is closed */
  }
}

/** Headers for an API call: `extra` plus the key, if one is set. */
export function withAuth(extra = {}) {
  const key = getApiKey();
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}
