// What the pages read, shaped from the API's answers. Unknown values stay null (shown "—").

export const ZONE_LABEL = "kuma.io/zone";
const DISPLAY_LABEL = "kuma.io/display-name";

export function displayName(resource) {
  return (resource.labels || {})[DISPLAY_LABEL] || resource.name;
}

export async function meshNames(api) {
  return (await api.items("/meshes")).map((mesh) => mesh.name);
}

export async function policyTypes(api) {
  return (await api.get("/policies")).policies;
}

// "online" while the newest subscription is open, "offline" once it closed, null when no
// proxy ever connected (a Dataplane put through the API has no insight).
export function proxyState(insight) {
  const subs = (insight && insight.subscriptions) || [];
  if (subs.length === 0) return null;
  return subs[subs.length - 1].disconnectTime ? "offline" : "online";
}

export function inbounds(dataplane) {
  const list = ((dataplane.networking || {}).inbound || []).filter((i) => i && i.tags);
  return list.map((inbound) => ({
    service: inbound.tags["kuma.io/service"],
    port: inbound.port,
    // Decision 28: an inbound without health is ready (registered with no proxy).
    ready: !inbound.health || inbound.health.ready !== false,
  }));
}

export async function dataplanes(api) {
  const [dps, insights] = await Promise.all([
    api.items("/dataplanes"),
    api.items("/dataplane-insights"),
  ]);
  const byKey = new Map(insights.map((i) => [`${i.mesh}/${i.name}`, i]));
  return dps.map((dp) => {
    const insight = byKey.get(`${dp.mesh}/${dp.name}`) || null;
    return {
      resource: dp,
      mesh: dp.mesh,
      name: dp.name,
      display: displayName(dp),
      zone: (dp.labels || {})[ZONE_LABEL] || null,
      state: proxyState(insight),
      certExpiry: insight && insight.mTLS ? insight.mTLS.certificateExpirationTime : null,
      inbounds: inbounds(dp),
    };
  });
}

// service -> zone -> {ready, total} inbounds, from the Dataplanes (the services endpoint
// counts only ready ones).
export function healthByService(rows, ownZone) {
  const out = new Map();
  for (const row of rows) {
    const zone = row.zone || ownZone || "";
    for (const inbound of row.inbounds) {
      const key = `${row.mesh}/${inbound.service}`;
      if (!out.has(key)) out.set(key, new Map());
      const perZone = out.get(key);
      const count = perZone.get(zone) || { ready: 0, total: 0 };
      count.total += 1;
      if (inbound.ready) count.ready += 1;
      perZone.set(zone, count);
    }
  }
  return out;
}

export async function services(api, meshes) {
  const pages = await Promise.all(meshes.map((mesh) => api.get(`/meshes/${mesh}/services`)));
  return pages.flatMap((page) => page.items.map((item) => ({ mesh: page.mesh, ...item })));
}

// The zone's VIP of `<service>.mesh`: the global answers a map per zone, a zone its own.
export function vipOf(item, zone, ownZone) {
  if (item.vips) return item.vips[zone] || null;
  return zone === ownZone ? item.vip || null : null;
}

export function lastDisconnect(subscriptions) {
  for (let i = subscriptions.length - 1; i >= 0; i -= 1) {
    if (subscriptions[i].disconnectTime) return subscriptions[i].disconnectTime;
  }
  return null;
}

export function shortVersion(version) {
  return version ? version.slice(0, 10) : null;
}
