// Portier's status page: read-only, refreshed every 2 s from the admin
// API's JSON endpoints. The token comes from the URL fragment
// (`/ui/#token=…`, never sent to the server) or the form, and is kept in
// sessionStorage; every request carries it as a bearer token.
"use strict";

const $ = (id) => document.getElementById(id);
let token = null;
let last = null; // previous /stats, for rates

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function table(head, rows) {
  if (rows.length === 0) return '<p class="muted">none</p>';
  return "<table><thead><tr>" + head.map((h) => `<th>${esc(h)}</th>`).join("") +
    "</tr></thead><tbody>" + rows.map((r) => "<tr>" + r.join("") + "</tr>").join("") + "</tbody></table>";
}
const td = (v, cls) => `<td${cls ? ` class="${esc(cls)}"` : ""}>${esc(v)}</td>`;
const num = (v) => td(v, "num");

async function get(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (r.status === 401) throw new Error("unauthorized");
  return { status: r.status, body: await r.json() };
}

function renderApps(apps, stats) {
  const depth = {};
  for (const a of stats?.apps ?? []) depth[a.name] = a;
  return table(["app", "domains", "backend", "state", "in flight", "queue"], apps.flatMap((a) => {
    const backends = a.backends.length ? a.backends : [{ address: "—", state: "", in_flight: "" }];
    return backends.map((b, i) => [
      i === 0 ? td(a.name) : td(""),
      i === 0 ? td(a.domains.join(" ")) : td(""),
      td(b.address),
      td(b.state, b.state),
      num(b.in_flight),
      i === 0 ? num(a.queue_depth ?? depth[a.name]?.queue_depth ?? 0) : td(""),
    ]);
  }));
}

function renderTraffic(stats) {
  const now = Date.now();
  const total = (stats.requests?.http1 ?? 0) + (stats.requests?.http2 ?? 0);
  let rate = "—";
  if (last && now > last.at) rate = (((total - last.total) * 1000) / (now - last.at)).toFixed(1);
  last = { at: now, total };
  const rows = [[td("requests"), num(total)], [td("requests/s"), num(rate)]];
  for (const [k, v] of Object.entries(stats.responses ?? {})) rows.push([td("responses " + k), num(v)]);
  rows.push([td("reloads ok / failed"), num(`${stats.reloads?.ok ?? 0} / ${stats.reloads?.failed ?? 0}`)]);
  return table(["", ""], rows);
}

function renderCerts(c) {
  const files = table(["file", "names", "not after", "days left"], (c.certificates ?? []).map((f) =>
    f.error ? [td(f.name), td(f.error, "failed"), td(""), td("")] :
      [td(f.name), td((f.names ?? []).join(" ")), td(f.not_after), num(f.days_left)]));
  if (!c.acme) return files;
  const acme = table(["ACME name", "state", "detail"], c.acme.names.map((n) => {
    let detail = n.renew_at ? `renew at ${n.renew_at}` : `next attempt ${n.next_attempt ?? ""}`;
    if (n.action) detail = `create ${n.action.type} ${n.action.name} = ${n.action.value}`;
    if (n.last_error) detail += ` — ${n.last_error}`;
    return [td(n.name), td(n.state, n.state), td(detail)];
  }));
  return files + acme;
}

function renderXdp(x) {
  if (x.status !== 200) return `<p class="muted">${esc(x.body.reason ?? "XDP not running")}</p>`;
  const rows = (x.body.reasons ?? []).map((r) => [td(r.reason), td(r.action, r.action), num(r.packets), num(r.bytes)]);
  return table(["reason", "action", "packets", "bytes"], rows);
}

function renderRegion(r) {
  const s = r.status;
  const head = `<p>node <b>${esc(s.node)}</b>, etcd ${s.connected ? '<span class="up">connected</span>' : '<span class="failed">disconnected</span>'}, revision ${esc(s.revision)}</p>`;
  return head + table(["node", "version", "revision", "health"], r.nodes.map((n) =>
    [td(n.node), td(n.version), num(n.revision), td(n.healthy ? "healthy" : "unhealthy", n.healthy ? "up" : "failed")]));
}

async function refresh() {
  try {
    const [apps, stats, certs, xdp, region] = await Promise.all(
      ["/apps", "/stats", "/certificates", "/xdp/stats", "/region"].map(get));
    $("apps").innerHTML = renderApps(apps.body.apps ?? [], stats.body);
    $("traffic").innerHTML = renderTraffic(stats.body);
    $("certs").innerHTML = renderCerts(certs.body);
    $("xdp").innerHTML = renderXdp(xdp);
    if (region.status === 200) {
      $("region-section").hidden = false;
      $("region").innerHTML = renderRegion(region.body);
    }
    $("state").textContent = "live, " + new Date().toLocaleTimeString();
    $("state").className = "ok";
  } catch (e) {
    $("state").textContent = e.message === "unauthorized" ? "wrong or missing token" : "unreachable: " + e.message;
    $("state").className = "bad";
    if (e.message === "unauthorized") { $("login").hidden = false; return; }
  }
  setTimeout(refresh, 2000);
}

function start() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem("portier-token", fromUrl);
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem("portier-token");
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("portier-token", token);
    $("login").hidden = true;
    refresh();
  });
  if (!token) { $("login").hidden = false; $("state").textContent = "token needed"; return; }
  refresh();
}
start();
