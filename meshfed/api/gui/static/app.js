// The GUI's shell: sign-in, the page router (#/page), and live updates from /_watch.

import { Api, Unauthorized } from "./api.js";
import { badge, h } from "./dom.js";
import { policyTypes } from "./data.js";
import { PAGES, WATCHED } from "./views.js";

const TOKEN_KEY = "meshfed.token";
const DEBOUNCE_MS = 250; // at most one re-read per this interval, however many changes
const $ = (id) => document.getElementById(id);

let session = null; // {api, mode, zone, policyTypes: Set, stop: AbortController}
let rendering = false;
let again = false;
let timer = null;
let renders = 0;

function page() {
  const name = window.location.hash.replace(/^#\/?/, "");
  return Object.hasOwn(PAGES, name) ? name : "overview";
}

function showLogin(message) {
  $("nav").hidden = true;
  for (const id of ["live", "refresh", "logout"]) $(id).hidden = true;
  const main = $("main");
  main.replaceChildren($("login-template").content.cloneNode(true));
  main.dataset.page = "login";
  const error = $("login-error");
  if (message) {
    error.textContent = message;
    error.hidden = false;
  }
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    start(token);
  });
  $("token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (session) session.stop.abort();
  session = null;
  showLogin(message);
}

function setLive(state) {
  const live = $("live");
  live.hidden = false;
  document.body.dataset.live = state;
  if (state === "live") {
    live.replaceChildren(badge("live", "ok"));
    live.title = "updates arrive through the /_watch stream";
  } else if (state === "forbidden") {
    live.replaceChildren(badge("not live: /_watch needs an admin token", "warn"));
    $("refresh").hidden = false;
  } else {
    live.replaceChildren(badge("reconnecting", "warn"));
  }
}

async function start(token) {
  const api = new Api(token);
  let info;
  try {
    info = await api.get("/");
  } catch (err) {
    if (err instanceof Unauthorized) signOut(`The token was refused: ${err.message}`);
    else showLogin(`The control plane did not answer: ${err.message}`);
    return;
  }
  let types;
  try {
    types = new Set((await policyTypes(api)).map((t) => t.name));
  } catch (err) {
    showLogin(`The control plane did not answer: ${err.message}`);
    return;
  }
  if (session) session.stop.abort();
  session = {
    api,
    mode: info.mode,
    zone: info.zone || null,
    policyTypes: types,
    stop: new AbortController(),
  };
  $("cp").textContent = info.mode === "global" ? "global control plane" : `zone ${info.zone}`;
  $("nav").hidden = false;
  $("logout").hidden = false;
  await render();
  const current = session;
  if (!current) return; // the first read was refused: signed out
  api.watch((event) => {
    if (shows(current, event.type)) schedule();
  }, (state) => {
    if (current !== session) return;
    setLive(state);
    if (state === "live") schedule(); // after a (re)connect: changes may have been missed
  }, current.stop.signal).catch((err) => {
    if (current === session && err instanceof Unauthorized) signOut(`Signed out: ${err.message}`);
  });
}

// Whether a change of `type` can change the page shown.
function shows(current, type) {
  const watched = WATCHED[page()];
  if (!watched) return true;
  return watched.has(type) || (watched.has("policy") && current.policyTypes.has(type));
}

// A burst of changes costs one re-read: the first schedules it, the others join it.
function schedule() {
  if (timer !== null) return;
  timer = setTimeout(() => {
    timer = null;
    render();
  }, DEBOUNCE_MS);
}

async function render() {
  if (!session) return;
  if (rendering) {
    again = true;
    return;
  }
  rendering = true;
  const current = session;
  const name = page();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  try {
    const node = await PAGES[name](current);
    if (current !== session || name !== page()) return;
    const main = $("main");
    const open = new Set([...main.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
    const closed = new Set([...main.querySelectorAll("details[data-key]:not([open])")].map((d) => d.dataset.key));
    for (const d of node.querySelectorAll("details[data-key]")) {
      if (open.has(d.dataset.key)) d.open = true;
      if (closed.has(d.dataset.key)) d.open = false;
    }
    main.replaceChildren(node);
    renders += 1;
    main.dataset.page = name;
    main.dataset.renders = String(renders);
    main.dataset.updated = new Date().toISOString();
  } catch (err) {
    if (err instanceof Unauthorized) {
      signOut(`Signed out: ${err.message}`);
      return;
    }
    if (current === session) {
      $("main").replaceChildren(h("div", { class: "card error", role: "alert" },
        `Could not load this page: ${err.message}`));
      $("main").dataset.page = "error";
    }
  } finally {
    rendering = false;
    if (again) {
      again = false;
      schedule();
    }
  }
}

window.addEventListener("hashchange", () => render());
$("refresh").addEventListener("click", () => render());
$("logout").addEventListener("click", () => signOut("Signed out."));

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showLogin("");
