// /: the nodes with their health, live; the server URL; the CA (fingerprint, copy, download).
// Changes arrive on /v3/subscribe: settings and clusters as events, the nodes re-read on every
// event and every ping (a node's health changes without a store event), and all nodes turn red
// the moment the subscription drops (this server stopped answering).

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api } from '../api.js';
import { copyButton, heading, resource, show, when } from '../ui.js';

const NODE_REFRESH_MIN_MS = 1000;
let nodes;
let cacerts;
let clusters;
let serverUrl;
let off = null;
let lastNodeLoad = 0;

function refreshNodes() {
  const now = Date.now();
  if (nodes.loading || now - lastNodeLoad < NODE_REFRESH_MIN_MS) return;
  lastNodeLoad = now;
  nodes.load();
}

function liveBadge(live) {
  const label = { live: 'Live', connecting: 'Connecting…', down: 'Reconnecting…', ended: 'Session ended', idle: 'Not connected' }[live.state];
  const tone = live.state === 'live' ? 'ok' : live.state === 'down' ? 'bad' : 'muted';
  return html`<span class="badge ${tone} dot" id="live-state" data-state=${live.state}>${label}</span>`;
}

function nodeState(node, live) {
  if (live.state === 'down') return { state: 'unreachable', tone: 'bad', label: 'Unreachable' };
  if (node.state === 'active') return { state: 'active', tone: 'ok', label: 'Active' };
  return { state: node.state || 'unknown', tone: 'bad', label: node.state === 'unavailable' ? 'Unavailable' : (node.state || 'Unknown') };
}

function version(node) {
  const text = (node.info && node.info.corralVersion) || '';
  return text && !text.startsWith('v') ? `v${text}` : text;
}

function nodeRows(list, live) {
  return list.map((node) => {
    const shown = nodeState(node, live);
    const checks = (node.health && node.health.checks) || [];
    return html`<tr data-node=${node.id} data-state=${shown.state}>
      <td data-label="Node"><strong>${node.nodeName || node.hostname}</strong><br><span class="hint mono">${
        node.hostname && node.hostname !== node.nodeName ? node.hostname : node.id}</span></td>
      <td data-label="State"><span class="badge ${shown.tone} dot">${shown.label}</span>
        ${live.state === 'down' && live.since ? html`<br><span class="hint">no answer since ${live.since.toLocaleTimeString()}</span>` : nothing}</td>
      <td data-label="Roles">${(node.roles || []).join(', ')}</td>
      <td data-label="Addresses" class="mono">${(node.addresses || [node.ipAddress]).filter(Boolean).join(', ')}</td>
      <td data-label="Version">${version(node)}</td>
      <td data-label="Health">${live.state === 'down' ? html`<span class="hint">last known:</span>` : nothing}
        <ul class=${live.state === 'down' ? 'checks stale' : 'checks'}>${checks.map((check) => html`<li class=${check.ok ? 'check-ok' : 'check-bad'}>
        ${check.ok ? '✔' : '✖'} <strong>${check.name}</strong>: ${check.message}</li>`)}</ul>
        ${node.heartbeatAt ? html`<span class="hint">heartbeat ${when(node.heartbeatAt)}</span>` : nothing}</td>
    </tr>`;
  });
}

function nodesSection(app) {
  return html`<section class="panel" aria-labelledby="nodes-title">
    <div class="spread"><h2 id="nodes-title">Nodes</h2>${liveBadge(app.live)}</div>
    ${show(nodes, 'the nodes', (data) => html`<div class="table-wrap"><table id="nodes" class="cards-on-phone">
      <thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col">Roles</th>
        <th scope="col">Addresses</th><th scope="col">Version</th><th scope="col">Health checks</th></tr></thead>
      <tbody>${nodeRows(data.data || [], app.live)}</tbody></table></div>`)}
  </section>`;
}

function serverSection(app) {
  const info = app.info;
  if (!info) return html`<section class="panel"><h2>Server</h2><p class="loading" role="status">Loading the server facts…</p></section>`;
  const url = serverUrl !== null ? serverUrl : info.serverUrl;
  return html`<section class="panel" aria-labelledby="server-title">
    <h2 id="server-title">Server</h2>
    <dl class="facts">
      <dt>Server URL</dt>
      <dd id="server-url">${url ? html`<code>${url}</code> ${copyButton(url)}`
        : html`<span class="badge warn">not set</span> <span class="hint">agents will be told ${info.requestUrl};
          ${app.me.admin ? html`set it in <a href="/settings">Settings</a>` : 'an admin can set it'}</span>`}</dd>
      <dt>Version</dt><dd>${info.version}</dd>
      <dt>Clusters</dt><dd id="cluster-count">${clusters.data ? html`<a href="/clusters">${clusters.data.length}</a>` : '…'}</dd>
      <dt>Audit log</dt><dd>${info.audit.enabled ? `on (level ${info.audit.level})` : 'off'}</dd>
    </dl>
  </section>`;
}

function caSection(app) {
  const info = app.info;
  if (!info) return nothing;
  return html`<section class="panel" aria-labelledby="ca-title">
    <h2 id="ca-title">Certificate authority</h2>
    ${info.cacerts ? html`<dl class="facts">
        <dt>SHA-256 fingerprint</dt><dd class="mono" id="ca-fingerprint">${info.ca.fingerprint}</dd>
        <dt>Agent checksum</dt><dd class="mono" id="ca-checksum">${info.ca.checksum}</dd>
      </dl>
      <p class="row">
        ${show(cacerts, 'the CA', (pem) => copyButton(pem, 'Copy cacerts'))}
        <a class="button small" href="/cacerts" download="cacerts.pem">Download cacerts.pem</a>
      </p>`
    : html`<p>This server publishes no CA of its own (<code>--no-cacerts</code>, or a certificate from a
        recognised CA): clients trust it through their usual CA bundle.</p>`}
  </section>`;
}

export const dashboardPage = {
  title: 'Dashboard',
  enter(app) {
    const changed = () => app.update();
    nodes = resource(() => api.get('/v3/nodes'), changed);
    cacerts = resource(async () => (await api.get('/v3/settings/cacerts')).value, changed);
    clusters = resource(async () => (await api.get('/v3/clusters')).data, changed);
    serverUrl = null;
    lastNodeLoad = 0;
    refreshNodes();
    cacerts.load();
    clusters.load();
    if (!app.info) api.get('/v3/ui/info').then((info) => { app.info = info; changed(); }).catch(() => null);
    off = app.live.on((message) => {
      if (message.name === 'state') {
        if (message.state === 'live') { lastNodeLoad = 0; refreshNodes(); clusters.load(); }
        changed();
      } else if (message.name === 'ping' || message.resourceType === 'node') {
        refreshNodes();
      } else if (message.resourceType === 'setting' && message.data && message.data.id === 'server-url') {
        serverUrl = message.name === 'resource.remove' ? '' : message.data.value;
        changed();
      } else if (message.resourceType === 'cluster') {
        clusters.load();
      }
    });
  },
  leave() {
    if (off) off();
    off = null;
  },
  view(app) {
    return html`${heading('Dashboard')}
      ${nodesSection(app)}
      <div class="cards">${serverSection(app)}${caSection(app)}</div>`;
  },
};
