// /audit (admin, when the API audit log is on): the last records, newest first, filtered by
// user, method and status. The filters live in the URL (?user=&method=&status=), so a filtered
// view has an address and back/forward step through the filters.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api } from '../api.js';
import { formValues, heading, resource, show, when } from '../ui.js';

const METHODS = ['', 'GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
const FILTERS = ['user', 'method', 'status'];
let records;

function query(app) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = app.query.get(name);
    if (value) params.set(name, value);
  }
  return params;
}

function apply(app, event) {
  const { values } = formValues(event);
  const params = new URLSearchParams();
  for (const name of FILTERS) if (values[name]) params.set(name, values[name].trim());
  const search = params.toString();
  app.navigate(`/audit${search ? `?${search}` : ''}`);
}

function statusBadge(code) {
  const tone = code >= 500 ? 'bad' : code >= 400 ? 'warn' : 'ok';
  return html`<span class="badge ${tone}">${code}</span>`;
}

function rows(list) {
  if (!list.length) return html`<tr><td colspan="5" class="hint">No record matches.</td></tr>`;
  return list.map((record) => html`<tr data-audit=${record.auditID}>
    <td>${when(record.requestTimestamp)}</td>
    <td>${record.user ? record.user.name : ''}</td>
    <td><code>${record.method}</code></td>
    <td class="audit-detail"><details><summary class="mono">${record.requestURI}</summary>
      <pre>${JSON.stringify(record, null, 2)}</pre></details></td>
    <td>${statusBadge(record.responseCode)}</td>
  </tr>`);
}

export const auditPage = {
  title: 'Audit log',
  admin: true,
  enter(app) {
    const params = query(app);
    params.set('limit', '200');
    records = resource(() => api.get(`/v3/ui/audit?${params}`), () => app.update());
    records.load();
  },
  view(app) {
    const current = query(app);
    return html`${heading('Audit log')}
      <p class="lead">The last API requests recorded in the audit log (newest first), as the file holds them:
        credentials and secret-looking values are redacted when written.</p>
      <form class="inline panel" id="audit-filters" role="search" @submit=${(event) => apply(app, event)}>
        <label>User <input name="user" .value=${current.get('user') || ''} autocomplete="off" spellcheck="false"></label>
        <label>Method <select name="method">${METHODS.map((m) => html`<option value=${m}
          ?selected=${(current.get('method') || '') === m}>${m || 'any'}</option>`)}</select></label>
        <label>Status <input name="status" .value=${current.get('status') || ''} size="5" placeholder="e.g. 4xx"
          autocomplete="off"></label>
        <button class="primary" type="submit">Filter</button>
        <button type="button" @click=${() => records.load()} ?disabled=${records.loading}>Refresh</button>
        ${current.toString() ? html`<a href="/audit">Clear filters</a>` : nothing}
      </form>
      ${show(records, 'the audit records', (data) => html`
        <p class="hint">Level ${data.level}; file <code>${data.file}</code>; ${data.data.length} records shown.</p>
        <div class="table-wrap"><table id="audit">
          <thead><tr><th scope="col">Time</th><th scope="col">User</th><th scope="col">Method</th>
            <th scope="col">Request</th><th scope="col">Status</th></tr></thead>
          <tbody>${rows(data.data)}</tbody></table></div>`)}`;
  },
};
