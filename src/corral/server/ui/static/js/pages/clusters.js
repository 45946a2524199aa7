// /clusters: the clusters (admins create and delete them) and /clusters/<id>: one cluster with
// its registration tokens and the command an operator runs on a host to register it.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api, itemPath } from '../api.js';
import { copyButton, debounce, errorBox, formValues, heading, resource, show, when } from '../ui.js';

let clusters;
let cluster;
let tokens;
let off = null;
const state = { creating: false, createError: null, rowBusy: '', rowError: null, tokenBusy: false, tokenError: null };

function reset() {
  Object.assign(state, { creating: false, createError: null, rowBusy: '', rowError: null, tokenBusy: false, tokenError: null });
}

async function create(app, event) {
  const { form, values } = formValues(event);
  state.creating = true;
  state.createError = null;
  app.update();
  try {
    const made = await api.post('/v3/clusters', { name: values.name, description: values.description });
    form.reset();
    app.notify(`Cluster ${made.name} created: register its nodes with the command below.`);
    app.navigate(`/clusters/${encodeURIComponent(made.id)}`);
  } catch (error) {
    state.createError = error;
  } finally {
    state.creating = false;
    app.update();
  }
}

async function remove(app, item, afterwards) {
  if (!window.confirm(`Delete the cluster ${item.name} and its registration tokens?`)) return;
  state.rowBusy = item.id;
  state.rowError = null;
  app.update();
  try {
    await api.del(itemPath('clusters', item.id));
    app.notify(`Cluster ${item.name} deleted.`);
    if (afterwards) afterwards();
    else await clusters.load();
  } catch (error) {
    state.rowError = { id: item.id, error };
  } finally {
    state.rowBusy = '';
    app.update();
  }
}

function stateBadge(item) {
  return html`<span class="badge ${item.state === 'active' ? 'ok' : 'warn'}">${item.state}</span>`;
}

function clusterRows(app, list) {
  if (!list.length) return html`<tr><td colspan="4" class="hint">No clusters yet.</td></tr>`;
  return list.map((item) => {
    const problem = state.rowError && state.rowError.id === item.id ? state.rowError.error : null;
    return html`<tr data-cluster=${item.name}>
      <td data-label="Cluster"><a href="/clusters/${encodeURIComponent(item.id)}">${item.name}</a><br><span class="hint">${item.description}</span></td>
      <td data-label="State">${stateBadge(item)}</td>
      <td data-label="Created">${when(item.created)}</td>
      <td data-label="Actions" class="actions">${item.links && item.links.remove ? html`<button type="button" class="small danger"
        ?disabled=${state.rowBusy === item.id} @click=${() => remove(app, item)}>Delete</button>` : nothing}
        ${problem ? errorBox(problem) : nothing}</td>
    </tr>`;
  });
}

export const clustersPage = {
  title: 'Clusters',
  enter(app) {
    clusters = resource(() => api.get('/v3/clusters'), () => app.update());
    reset();
    clusters.load();
    const reload = debounce(() => clusters.load(), 300);
    off = app.live.on((message) => { if (message.resourceType === 'cluster') reload(); });
  },
  leave() {
    if (off) off();
    off = null;
  },
  view(app) {
    return html`${heading('Clusters')}
      ${app.me && app.me.admin ? html`<section class="panel" aria-labelledby="new-cluster">
        <h2 id="new-cluster">Create a cluster</h2>
        <form class="inline" id="create-cluster" @submit=${(event) => create(app, event)}>
          <label>Name <input name="name" required autocomplete="off" autocapitalize="off" spellcheck="false"
            aria-describedby="cluster-name-hint"></label>
          <label>Description <input name="description" autocomplete="off"></label>
          <button class="primary" type="submit" ?disabled=${state.creating}>${state.creating ? 'Creating…' : 'Create cluster'}</button>
        </form>
        <p class="hint" id="cluster-name-hint">Lower-case letters, digits and dashes, like a DNS label.</p>
        ${errorBox(state.createError)}
      </section>` : nothing}
      ${show(clusters, 'the clusters', (data) => html`<div class="table-wrap"><table id="clusters" class="cards-on-phone">
        <thead><tr><th scope="col">Cluster</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
        <tbody>${clusterRows(app, data.data || [])}</tbody></table></div>`)}`;
  },
};

async function newToken(app, id) {
  state.tokenBusy = true;
  state.tokenError = null;
  app.update();
  try {
    await api.post('/v3/clusterregistrationtokens', { clusterId: id });
    await tokens.load();
  } catch (error) {
    state.tokenError = error;
  } finally {
    state.tokenBusy = false;
    app.update();
  }
}

function tokenList(app, id, list) {
  if (!list.length) return html`<p>No registration token: create one to register nodes.</p>`;
  return list.map((token) => html`<article class="panel" data-registration=${token.id}>
    <h3>Token <code>${token.name}</code> <span class="hint">created ${when(token.created)}</span></h3>
    <p>Run this on each host that should join the cluster with every role (etcd, control plane, worker):</p>
    <pre class="command node-command">${token.nodeCommand}</pre>
    <p class="row">${copyButton(token.nodeCommand, 'Copy command')}</p>
    <details><summary>Only some roles</summary>
      <p>The agent without role flags; add <code>--etcd</code>, <code>--controlplane</code> and/or <code>--worker</code>:</p>
      <pre class="command">${token.command}</pre><p class="row">${copyButton(token.command, 'Copy command')}</p>
    </details>
  </article>`);
}

export const clusterPage = {
  title: 'Cluster',
  enter(app, [id]) {
    const changed = () => app.update();
    cluster = resource(() => api.get(itemPath('clusters', id)), changed);
    tokens = resource(async () => (app.me && app.me.admin
      ? (await api.get(`/v3/clusterregistrationtokens?clusterId=${encodeURIComponent(id)}`)).data
      : []), changed);
    reset();
    cluster.load();
    tokens.load();
    off = app.live.on((message) => {
      if (message.resourceType === 'cluster' && message.data && message.data.id === id) cluster.load();
      if (message.resourceType === 'clusterRegistrationToken') tokens.load();
    });
  },
  leave() {
    if (off) off();
    off = null;
  },
  view(app) {
    const id = app.params[0];
    return html`<p><a href="/clusters">← All clusters</a></p>
      ${show(cluster, 'the cluster', (item) => html`${heading(`Cluster ${item.name}`)}
        <section class="panel"><dl class="facts">
          <dt>State</dt><dd>${stateBadge(item)} <span class="hint">${item.transitioningMessage}</span></dd>
          <dt>Description</dt><dd>${item.description || html`<span class="hint">(none)</span>`}</dd>
          <dt>Created</dt><dd>${when(item.created)}</dd>
          <dt>Id</dt><dd class="mono">${item.id}</dd>
        </dl>
        ${item.links && item.links.remove ? html`<p><button type="button" class="small danger"
          @click=${() => remove(app, item, () => app.navigate('/clusters'))}>Delete cluster</button></p>` : nothing}
        ${state.rowError ? errorBox(state.rowError.error) : nothing}
        </section>
        ${app.me && app.me.admin ? html`<section aria-labelledby="register-title">
          <div class="spread"><h2 id="register-title">Register nodes</h2>
            <button type="button" class="small" ?disabled=${state.tokenBusy} @click=${() => newToken(app, id)}>New registration token</button></div>
          ${errorBox(state.tokenError)}
          ${show(tokens, 'the registration tokens', (list) => tokenList(app, id, list))}
        </section>` : html`<p class="hint">An admin can show the registration command.</p>`}`)}`;
  },
};
