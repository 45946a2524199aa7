// /api-keys: your tokens. A new API key's secret is shown once, in the page only (never in a URL,
// the console or storage), until you dismiss it; the server keeps only its digest.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api, itemPath } from '../api.js';
import { copyButton, debounce, errorBox, formValues, heading, resource, show, when } from '../ui.js';

const HOUR_MS = 3600 * 1000;
const TTLS = [
  ['0', 'Never'],
  [String(HOUR_MS), '1 hour'],
  [String(24 * HOUR_MS), '1 day'],
  [String(30 * 24 * HOUR_MS), '30 days'],
  [String(90 * 24 * HOUR_MS), '90 days'],
];

let tokens;
let off = null;
const state = { creating: false, createError: null, created: null, rowBusy: '', rowError: null };

async function create(app, event) {
  const { form, values } = formValues(event);
  state.creating = true;
  state.createError = null;
  app.update();
  try {
    state.created = await api.post('/v3/tokens', { description: values.description, ttl: Number(values.ttl) });
    form.reset();
    tokens.load();
  } catch (error) {
    state.createError = error;
  } finally {
    state.creating = false;
    app.update();
  }
  document.getElementById('new-key')?.focus();
}

async function remove(app, token) {
  const question = token.current
    ? 'This is the session you are using: deleting it logs you out. Delete it?'
    : `Delete ${token.description || token.id}? Clients using it stop working at once.`;
  if (!window.confirm(question)) return;
  state.rowBusy = token.id;
  state.rowError = null;
  app.update();
  try {
    await api.del(itemPath('tokens', token.id));
    if (token.current) {
      app.endSession('You deleted the session you were using, so you are logged out.');
      app.navigate('/login');
      return;
    }
    app.notify(`Deleted ${token.description || token.id}.`);
    await tokens.load();
  } catch (error) {
    state.rowError = { id: token.id, error };
  } finally {
    state.rowBusy = '';
    app.update();
  }
}

function createdPanel(app) {
  const created = state.created;
  if (!created) return nothing;
  const [access, secret] = created.token.split(':');
  const done = () => { state.created = null; app.update(); };
  return html`<section class="secret" id="new-key" tabindex="-1" aria-labelledby="new-key-title">
    <h2 id="new-key-title">Your new API key</h2>
    <p><strong>Copy it now: it is shown only this once.</strong> The server keeps only a digest of it.</p>
    <dl class="facts">
      <dt>Access key</dt><dd><code>${access}</code></dd>
      <dt>Secret key</dt><dd><code>${secret}</code></dd>
      <dt>Bearer token</dt><dd><code id="new-key-token">${created.token}</code> ${copyButton(created.token)}</dd>
    </dl>
    <p class="hint">Use it as <code>Authorization: Bearer &lt;token&gt;</code>, or as Basic authentication with the
      access key as user name and the secret key as password.</p>
    <button type="button" class="primary" @click=${done}>I have copied it</button>
  </section>`;
}

function tokenRows(app, list) {
  return list.map((token) => {
    const problem = state.rowError && state.rowError.id === token.id ? state.rowError.error : null;
    return html`<tr data-token=${token.id}>
      <td data-label="Key">${token.description || html`<span class="hint">(no description)</span>`}<br><span class="hint mono">${token.id}</span></td>
      <td data-label="Kind">${token.isDerived ? 'API key' : 'login session'}${token.current ? html` <span class="badge muted">this session</span>` : nothing}</td>
      <td data-label="Created">${when(token.created)}</td>
      <td data-label="Expires">${token.expired ? html`<span class="badge bad">expired</span>` : token.expiresAt ? when(token.expiresAt) : 'never'}</td>
      <td data-label="Actions" class="actions"><button type="button" class="small danger" ?disabled=${state.rowBusy === token.id}
        @click=${() => remove(app, token)}>Delete</button>${problem ? errorBox(problem) : nothing}</td>
    </tr>`;
  });
}

export const keysPage = {
  title: 'API keys',
  enter(app) {
    tokens = resource(() => api.get('/v3/tokens'), () => app.update());
    Object.assign(state, { creating: false, createError: null, created: null, rowBusy: '', rowError: null });
    tokens.load();
    const reload = debounce(() => tokens.load(), 300);
    off = app.live.on((message) => { if (message.resourceType === 'token') reload(); });
  },
  leave() {
    state.created = null; // the secret goes with the page
    if (off) off();
    off = null;
  },
  view(app) {
    return html`${heading('API keys')}
      <p class="lead">Keys for scripts and tools such as kubectl or curl. Each acts as you.</p>
      ${createdPanel(app)}
      <section class="panel" aria-labelledby="create-key-title">
        <h2 id="create-key-title">Create an API key</h2>
        <form class="inline" id="create-key" @submit=${(event) => create(app, event)}>
          <label>Description <input name="description" autocomplete="off" placeholder="e.g. CI deploy job"></label>
          <label>Expires after
            <select name="ttl">${TTLS.map(([value, label]) => html`<option value=${value}>${label}</option>`)}</select>
          </label>
          <button class="primary" type="submit" ?disabled=${state.creating}>${state.creating ? 'Creating…' : 'Create API key'}</button>
        </form>
        ${errorBox(state.createError)}
      </section>
      ${show(tokens, 'your keys', (data) => html`<div class="table-wrap"><table id="tokens" class="cards-on-phone">
        <thead><tr><th scope="col">Description</th><th scope="col">Kind</th><th scope="col">Created</th>
          <th scope="col">Expires</th><th scope="col">Actions</th></tr></thead>
        <tbody>${tokenRows(app, data.data || [])}</tbody></table></div>`)}`;
  },
};
