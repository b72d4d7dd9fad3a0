// One function per page: reads what it shows through the API, returns its DOM.

import { ApiError } from "./api.js";
import * as data from "./data.js";
import { UNKNOWN, badge, empty, h, num, table, text, when } from "./dom.js";
import { toYaml } from "./yaml.js";

function tile(label, value, key) {
  return h("div", { class: "card tile", "data-tile": key }, h("div", { class: "value" }, value),
    h("div", { class: "label" }, label));
}

function ratio(part, whole) {
  return `${Number.isFinite(part) ? part : UNKNOWN} / ${Number.isFinite(whole) ? whole : UNKNOWN}`;
}

function stateBadge(state) {
  if (state === "online" || state === "connected") return badge(state, "ok");
  if (state === null || state === undefined) return badge("no proxy", "none");
  return badge(state, "bad");
}

// A zone's KDS status; null for a standalone zone (no global: no /_kds).
async function kdsStatus(api) {
  try {
    return await api.get("/_kds");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

async function zoneCounts(ctx) {
  if (ctx.mode === "global") {
    const zones = await ctx.api.items("/zones+insights");
    const online = zones.filter((z) => z.zoneInsight.state === "online").length;
    return ratio(online, zones.length);
  }
  const kds = await kdsStatus(ctx.api);
  return `${ctx.zone}: ${kds ? kds.state : "standalone"}`;
}

async function policyCounts(ctx) {
  const types = await data.policyTypes(ctx.api);
  const totals = await Promise.all(
    types.map(async (t) => ({ name: t.name, total: (await ctx.api.get(`/${t.path}?size=1`)).total })),
  );
  return totals;
}

export async function overview(ctx) {
  const meshes = await data.meshNames(ctx.api);
  const [zones, services, dps, policies] = await Promise.all([
    zoneCounts(ctx),
    data.services(ctx.api, meshes),
    data.dataplanes(ctx.api),
    policyCounts(ctx),
  ]);
  const online = dps.filter((dp) => dp.state === "online").length;
  return h("section", {},
    h("h1", {}, "Overview"),
    h("div", { class: "tiles" },
      tile(ctx.mode === "global" ? "zones online / total" : "KDS", zones, "zones"),
      tile("meshes", String(meshes.length), "meshes"),
      tile("services", String(services.length), "services"),
      tile("dataplanes online / total", ratio(online, dps.length), "dataplanes"),
      tile("policies", String(policies.reduce((sum, p) => sum + p.total, 0)), "policies")),
    h("h2", {}, "Policies by type"),
    table(["type", "count"], policies.map((p) =>
      h("tr", { "data-type": p.name }, h("td", {}, p.name), num(p.total))), { id: "policy-types" }));
}

function typeStats(status) {
  const sent = (status && status.stat) || {};
  const received = (status && status.received && status.received.stat) || {};
  const rows = [];
  for (const [type, s] of Object.entries(sent).sort()) {
    rows.push(h("tr", { "data-type": type }, h("td", {}, "global \u2192 zone"), h("td", {}, type),
      num(s.responsesSent), num(s.responsesAcknowledged), num(s.responsesRejected), num(s.pending),
      h("td", { class: "error" }, s.lastError || "")));
  }
  for (const [type, s] of Object.entries(received).sort()) {
    rows.push(h("tr", { "data-type": type }, h("td", {}, "zone \u2192 global"), h("td", {}, type),
      num(s.responsesReceived), num(s.responsesAcknowledged), num(s.responsesRejected),
      h("td", { class: "num none" }, UNKNOWN), h("td", { class: "error" }, s.lastError || "")));
  }
  if (rows.length === 0) return empty("synchronisation yet");
  return table(["direction", "type", "sent", "ACKed", "NACKed", "lag (pending)", "last error"], rows);
}

export async function zones(ctx) {
  if (ctx.mode !== "global") return zoneKds(ctx);
  const items = await ctx.api.items("/zones+insights");
  if (items.length === 0) return h("section", {}, h("h1", {}, "Zones"), empty("zones"));
  const rows = items.map((z) => {
    const ins = z.zoneInsight;
    const subs = ins.subscriptions || [];
    const current = subs[subs.length - 1];
    return h("tr", { "data-zone": z.name },
      h("td", {}, z.name), h("td", {}, z.zone.enabled ? "yes" : "no"),
      h("td", {}, stateBadge(ins.state)),
      h("td", {}, ins.inSync ? badge("in sync", "ok") : badge("syncing", "warn")),
      h("td", {}, when(current && current.connectTime)),
      h("td", {}, when(data.lastDisconnect(subs))),
      h("td", {}, when(ins.lastHealthCheck)), num(ins.pending),
      h("td", { class: "error" }, ins.lastError || ""));
  });
  const details = items.map((z) => {
    const subs = z.zoneInsight.subscriptions || [];
    const current = subs[subs.length - 1];
    return h("details", { "data-key": `zone/${z.name}`, open: true },
      h("summary", {}, `${z.name}: per type (current connection)`),
      typeStats(current && current.status));
  });
  return h("section", {}, h("h1", {}, "Zones"),
    table(["zone", "enabled", "state", "sync", "last connect", "last disconnect",
      "last health check", "lag (pending)", "last error"], rows, { id: "zones" }),
    details);
}

async function zoneKds(ctx) {
  const kds = await kdsStatus(ctx.api);
  if (kds === null) {
    return h("section", {}, h("h1", {}, `Zone ${ctx.zone}`),
      h("p", { id: "standalone" }, "A standalone zone: it has no global control plane."));
  }
  const rows = [];
  for (const [type, s] of Object.entries(kds.received || {}).sort()) {
    rows.push(h("tr", { "data-type": type }, h("td", {}, "global \u2192 zone"), h("td", {}, type),
      num(s.responsesReceived), num(s.acksSent), num(s.nacksSent), num(s.held),
      h("td", { class: "error" }, s.lastNackError || "")));
  }
  for (const [type, s] of Object.entries(kds.sent || {}).sort()) {
    rows.push(h("tr", { "data-type": type }, h("td", {}, "zone \u2192 global"), h("td", {}, type),
      num(s.responsesSent), num(s.responsesAcknowledged), num(s.responsesRejected),
      h("td", { class: "num none" }, UNKNOWN), h("td", { class: "error" }, s.lastNackError || s.lastError || "")));
  }
  return h("section", {}, h("h1", {}, `Zone ${ctx.zone}`),
    table(["global", "state", "connected since", "sessions", "last error"], [
      h("tr", { "data-zone": ctx.zone }, h("td", {}, kds.global), h("td", {}, stateBadge(kds.state)),
        h("td", {}, when(kds.connectedSince)), num(kds.sessions),
        h("td", { class: "error" }, kds.lastError || "")),
    ], { id: "zones" }),
    h("p", { class: "muted" }, "Every zone's state is listed by the global's GUI."),
    rows.length ? table(["direction", "type", "received/sent", "ACKed", "NACKed", "held", "last error"], rows) : empty("synchronisation yet"));
}

export async function services(ctx) {
  const meshes = await data.meshNames(ctx.api);
  const [items, dps] = await Promise.all([data.services(ctx.api, meshes), data.dataplanes(ctx.api)]);
  const health = data.healthByService(dps, ctx.zone);
  const zoneSet = new Set();
  for (const item of items) {
    for (const z of item.zones) zoneSet.add(z.zone);
    for (const z of Object.keys(item.vips || {})) zoneSet.add(z);
  }
  for (const perZone of health.values()) for (const z of perZone.keys()) if (z) zoneSet.add(z);
  if (ctx.zone) zoneSet.add(ctx.zone);
  const zoneNames = [...zoneSet].sort();
  const rows = items.map((item) => {
    const perZone = health.get(`${item.mesh}/${item.service}`) || new Map();
    const cells = zoneNames.map((zone) => {
      const found = item.zones.find((z) => z.zone === zone);
      const count = perZone.get(zone);
      const vip = data.vipOf(item, zone, ctx.zone);
      if (!found && !count && !vip) return h("td", { "data-zone": zone, class: "none" }, UNKNOWN);
      const healthText = count ? `${count.ready}/${count.total} ready` : "health " + UNKNOWN;
      const healthy = count ? (count.ready === count.total ? "ok" : count.ready ? "warn" : "bad") : "none";
      return h("td", { "data-zone": zone },
        h("div", {}, `${found ? found.instances : 0} instance(s) `, badge(healthText, healthy)),
        h("div", { class: "mono" }, `VIP ${text(vip)}`));
    });
    return h("tr", { "data-service": `${item.mesh}/${item.service}` },
      h("td", {}, item.mesh), h("td", {}, item.service), num(item.instances), cells);
  });
  return h("section", {}, h("h1", {}, "Services"),
    rows.length ? table(["mesh", "service", "instances", ...zoneNames], rows, { id: "services" }) : empty("services"));
}

function matrixCell(item, zone) {
  const held = item.zones.find((z) => z.zone === zone);
  if (!held) return h("td", { "data-zone": zone, "data-state": "not-sent", class: "none" }, "not sent");
  const version = data.shortVersion(held.version);
  if (held.lastError) {
    return h("td", { "data-zone": zone, "data-state": "rejected", title: held.lastError },
      badge(`NACK ${version || ""}`.trim(), "bad"), h("div", { class: "error" }, held.lastError));
  }
  if (held.inSync) {
    return h("td", { "data-zone": zone, "data-state": "in-sync", "data-version": held.version },
      badge(`\u2713 ${version}`, "ok"));
  }
  const state = held.version ? "stale" : "missing";
  return h("td", { "data-zone": zone, "data-state": state, "data-version": held.version || "" },
    badge(held.version ? `${version} (old)` : `${text(null)} not held`, "warn"),
    h("div", { class: "muted" }, held.state));
}

async function matrix(ctx, meshes) {
  const zoneNames = (await ctx.api.items("/zones+insights")).map((z) => z.name).sort();
  const syncs = await Promise.all(meshes.map((m) => ctx.api.get(`/meshes/${m}/policies/_sync`)));
  const rows = syncs.flatMap((sync) => sync.items.map((item) =>
    h("tr", { "data-policy": `${item.type}/${item.mesh}/${item.name}`, "data-version": item.version },
      h("td", {}, item.type), h("td", {}, item.mesh), h("td", {}, item.name),
      h("td", { class: "mono" }, data.shortVersion(item.version)),
      zoneNames.map((zone) => matrixCell(item, zone)))));
  return [h("h2", {}, "Which zone holds which version"),
    rows.length ? table(["type", "mesh", "name", "global version", ...zoneNames], rows, { id: "matrix" }) : empty("policies")];
}

export async function policies(ctx) {
  const meshes = await data.meshNames(ctx.api);
  const types = await data.policyTypes(ctx.api);
  // The matrix is read before the policies: a policy created between the two reads is then
  // at most missing from the matrix until the next render, never in the matrix without its
  // YAML (seen in a live render: the row shown, its <details> not yet).
  const head = ctx.mode === "global" ? await matrix(ctx, meshes)
    : [h("p", { class: "muted" }, "The zone \u00d7 version matrix is on the global's GUI.")];
  const lists = await Promise.all(types.map((t) => ctx.api.items(`/${t.path}`)));
  const all = lists.flat();
  const yaml = all.map((p) => {
    const key = `${p.type}/${p.mesh}/${p.name}`;
    return h("details", { "data-key": `policy/${key}`, "data-policy": key },
      h("summary", {}, h("strong", {}, p.type), ` ${p.mesh}/${p.name} `,
        h("span", { class: "muted" }, (p.labels || {})["kuma.io/origin"] || "")),
      h("pre", {}, toYaml(p)));
  });
  return h("section", {}, h("h1", {}, "Policies"), head, h("h2", {}, "Policies (YAML)"),
    yaml.length ? h("div", { id: "policy-yaml" }, yaml) : empty("policies"));
}

export async function dataplanes(ctx) {
  const rows = await data.dataplanes(ctx.api);
  const matched = await Promise.all(rows.map((dp) =>
    ctx.api.get(`/meshes/${dp.mesh}/dataplanes/${dp.name}/_policies`)));
  const trs = rows.map((dp, i) => h("tr", { "data-dataplane": `${dp.mesh}/${dp.name}` },
    h("td", {}, dp.mesh), h("td", {}, dp.display), h("td", {}, text(dp.zone || ctx.zone)),
    h("td", {}, stateBadge(dp.state)),
    h("td", {}, h("ul", { class: "plain" }, dp.inbounds.map((inbound) =>
      h("li", {}, `${inbound.service}:${inbound.port} `,
        inbound.ready ? badge("ready", "ok") : badge("not ready", "bad"))))),
    h("td", { class: "expiry" }, when(dp.certExpiry)),
    h("td", { class: "policies" }, matched[i].items.length
      ? h("ul", { class: "plain" }, matched[i].items.map((p) => h("li", {}, `${p.type} ${p.displayName}`)))
      : h("span", { class: "none" }, "none"))));
  return h("section", {}, h("h1", {}, "Dataplanes"),
    trs.length ? table(["mesh", "name", "zone", "proxy", "inbounds", "certificate expires", "policies that apply"], trs, { id: "dataplanes" }) : empty("dataplanes"));
}

export const PAGES = { overview, zones, services, policies, dataplanes };

// The store changes each page shows (a type name, or "policy" for every policy type); a page
// is re-read only for these. null: every change.
export const WATCHED = {
  overview: null,
  zones: new Set(["Zone", "ZoneInsight"]),
  services: new Set(["Mesh", "Dataplane", "VirtualIPs", "ZoneIngress", "ZoneIngressInsight"]),
  policies: new Set(["Mesh", "Zone", "ZoneInsight", "policy"]),
  dataplanes: new Set(["Mesh", "Dataplane", "DataplaneInsight", "policy"]),
};
