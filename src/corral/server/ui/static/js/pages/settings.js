// /settings: every known setting; admins edit the writable ones in place (the server checks
// the value and its message is shown next to the field); read-only ones are marked.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api, itemPath } from '../api.js';
import { debounce, errorBox, formValues, heading, resource, show } from '../ui.js';

const ABOUT = {
  'server-url': 'The URL users and agents reach the server by: https://host[:port].',
  'system-default-registry': 'Registry prefixed to the agent image (air-gapped installs): host[:port][/path].',
  'auth-user-session-ttl-minutes': 'How long a login lasts, in minutes.',
  'ui-pl': 'The product name the UI shows.',
  'telemetry-opt': 'Telemetry: in, out or prompt.',
  cacerts: 'The CA clients should trust (from the server\u2019s certificates).',
  'server-version': 'The version of this server.',
};

let settings;
let off = null;
const state = { busy: '', errors: {}, saved: '' };

async function save(app, setting, event) {
  const { values } = formValues(event);
  state.busy = setting.id;
  state.errors = { ...state.errors, [setting.id]: null };
  state.saved = '';
  app.update();
  try {
    await api.put(itemPath('settings', setting.id), { value: values.value });
    state.saved = setting.id;
    app.notify(`Saved ${setting.id}.`);
    await settings.load();
  } catch (error) {
    state.errors = { ...state.errors, [setting.id]: error };
  } finally {
    state.busy = '';
    app.update();
  }
}

function valueCell(app, setting) {
  const editable = Boolean(setting.links && setting.links.update);
  if (!editable) {
    const long = setting.value.length > 120;
    return html`${setting.value ? (long
        ? html`<details><summary class="mono">${setting.value.slice(0, 60)}…</summary><pre>${setting.value}</pre></details>`
        : html`<code>${setting.value}</code>`)
      : html`<span class="hint">(empty)</span>`}`;
  }
  return html`<form class="inline" @submit=${(event) => save(app, setting, event)}>
      <label class="sr-only" for="setting-${setting.id}">${setting.id}</label>
      <input id="setting-${setting.id}" name="value" .value=${setting.value} size="40" autocomplete="off"
        spellcheck="false" aria-describedby="about-${setting.id}">
      <button type="submit" class="small primary" ?disabled=${state.busy === setting.id}>
        ${state.busy === setting.id ? 'Saving…' : 'Save'}</button>
    </form>${errorBox(state.errors[setting.id])}`;
}

function rows(app, list) {
  return list.map((setting) => html`<tr data-setting=${setting.id}>
    <th scope="row" class="mono">${setting.id}<br>
      ${setting.readOnly ? html`<span class="badge muted">read-only</span>`
        : setting.links && setting.links.update ? nothing : html`<span class="badge muted">admins change it</span>`}</th>
    <td>${valueCell(app, setting)}
      <div class="hint" id="about-${setting.id}">${ABOUT[setting.id] || ''}${setting.default && setting.default !== setting.value
        ? html` Default: <code>${setting.default.length > 60 ? `${setting.default.slice(0, 60)}…` : setting.default}</code>` : nothing}</div></td>
  </tr>`);
}

export const settingsPage = {
  title: 'Settings',
  enter(app) {
    settings = resource(() => api.get('/v3/settings'), () => app.update());
    Object.assign(state, { busy: '', errors: {}, saved: '' });
    settings.load();
    const reload = debounce(() => settings.load(), 300);
    off = app.live.on((message) => { if (message.resourceType === 'setting' && !state.busy) reload(); });
  },
  leave() {
    if (off) off();
    off = null;
  },
  view(app) {
    return html`${heading('Settings')}
      ${show(settings, 'the settings', (data) => html`<div class="table-wrap"><table id="settings">
        <thead><tr><th scope="col">Setting</th><th scope="col">Value</th></tr></thead>
        <tbody>${rows(app, data.data || [])}</tbody></table></div>`)}`;
  },
};
