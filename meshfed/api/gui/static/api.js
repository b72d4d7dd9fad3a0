// The REST API and the /_watch stream, with the user's token on every call.

export class Unauthorized extends Error {}
export class Forbidden extends Error {}

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

async function detailOf(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || response.statusText;
  } catch {
    return response.statusText;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  headers() {
    return { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
  }

  async get(path) {
    const response = await fetch(path, { headers: this.headers(), cache: "no-store" });
    if (response.status === 401) throw new Unauthorized(await detailOf(response));
    if (response.status === 403) throw new Forbidden(await detailOf(response));
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    return response.json();
  }

  // Every item of a list endpoint, following `next` (an absolute URL of this API).
  async items(path) {
    const out = [];
    let page = await this.get(`${path}${path.includes("?") ? "&" : "?"}size=1000`);
    out.push(...page.items);
    while (page.next) {
      const next = new URL(page.next, window.location.origin);
      page = await this.get(next.pathname + next.search);
      out.push(...page.items);
    }
    return out;
  }

  // Reads /_watch until `signal` aborts: onEvent for every store change, onState for the
  // stream's state ("live", "reconnecting", "forbidden"). Reconnects with a backoff; after a
  // reconnect the caller refreshes, since changes may have been missed meanwhile.
  async watch(onEvent, onState, signal) {
    let delay = 250;
    while (!signal.aborted) {
      try {
        const response = await fetch("/_watch", { headers: this.headers(), signal });
        if (response.status === 401) throw new Unauthorized(await detailOf(response));
        if (response.status === 403) {
          onState("forbidden");
          return;
        }
        if (!response.ok) throw new ApiError(response.status, await detailOf(response));
        onState("live");
        delay = 250;
        await readLines(response.body, (line) => onEvent(JSON.parse(line)));
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Unauthorized) throw err;
      }
      if (signal.aborted) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

async function readLines(body, onLine) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf("\n");
    while (end >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) onLine(line);
      end = buffer.indexOf("\n");
    }
  }
}
