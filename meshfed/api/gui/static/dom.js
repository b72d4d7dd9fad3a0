// Building DOM nodes from data without innerHTML: text is always text, never markup.

export const UNKNOWN = "\u2014"; // shown where a value is not known

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function text(value) {
  return value === undefined || value === null || value === "" ? UNKNOWN : String(value);
}

export function num(value) {
  return h("td", { class: "num" }, Number.isFinite(value) ? String(value) : UNKNOWN);
}

export function when(iso) {
  if (!iso) return h("span", { class: "none" }, UNKNOWN);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

export function badge(label, kind) {
  return h("span", { class: `badge ${kind}` }, label);
}

export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows),
  );
}

export function empty(what) {
  return h("p", { class: "muted" }, `No ${what}.`);
}
