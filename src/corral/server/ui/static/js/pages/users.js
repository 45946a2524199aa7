// /users (admin): create users, enable/disable them, make or unmake admins, set passwords,
// delete. The list follows user events on /v3/subscribe.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api, itemPath } from '../api.js';
import { debounce, errorBox, formValues, heading, resource, show } from '../ui.js';

let users;
let off = null;
const state = { creating: false, createError: null, rowBusy: '', rowError: null, passwordFor: '' };

async function create(app, event) {
  const { form, values } = formValues(event);
  state.creating = true;
  state.createError = null;
  app.update();
  try {
    const user = await api.post('/v3/users', {
      username: values.username,
      password: values.password,
      name: values.name,
      admin: values.admin,
      mustChangePassword: values.mustChangePassword,
    });
    form.reset();
    app.notify(`User ${user.username} created.`);
    users.load();
  } catch (error) {
    state.createError = error;
  } finally {
    state.creating = false;
    app.update();
  }
}

async function rowAction(app, user, label, action) {
  state.rowBusy = user.id;
  state.rowError = null;
  app.update();
  try {
    await action();
    app.notify(`${label}: ${user.username}.`);
    await users.load();
  } catch (error) {
    state.rowError = { id: user.id, error };
  } finally {
    state.rowBusy = '';
    app.update();
  }
}

function update(app, user, changes, label) {
  return rowAction(app, user, label, () => api.put(itemPath('users', user.id), changes));
}

function remove(app, user) {
  if (!window.confirm(`Delete the user ${user.username} and all of their tokens?`)) return;
  rowAction(app, user, 'Deleted', () => api.del(itemPath('users', user.id)));
}

function setPassword(app, user, event) {
  const { values } = formValues(event);
  rowAction(app, user, 'Password set', async () => {
    await api.post(`${itemPath('users', user.id)}?action=setpassword`, { newPassword: values.newPassword });
    state.passwordFor = '';
  });
}

function passwordRow(app, user) {
  if (state.passwordFor !== user.id) return nothing;
  return html`<tr class="subrow"><td colspan="5">
    <form class="inline" @submit=${(event) => setPassword(app, user, event)} aria-label="Set the password of ${user.username}">
      <label>New password for ${user.username}
        <input name="newPassword" type="password" autocomplete="new-password" required minlength="12">
      </label>
      <button class="primary" type="submit" ?disabled=${state.rowBusy === user.id}>Set password</button>
      <button type="button" @click=${() => { state.passwordFor = ''; app.update(); }}>Cancel</button>
    </form></td></tr>`;
}

function userRows(app, list) {
  return list.map((user) => {
    const busy = state.rowBusy === user.id;
    const problem = state.rowError && state.rowError.id === user.id ? state.rowError.error : null;
    return html`<tr data-user=${user.username}>
        <td data-label="Username"><strong>${user.username}</strong>${user.me ? html` <span class="badge muted">you</span>` : nothing}</td>
        <td data-label="Name">${user.name}</td>
        <td data-label="Role">${user.admin ? html`<span class="badge ok">admin</span>` : 'user'}</td>
        <td data-label="Status">${user.enabled ? html`<span class="badge ok">enabled</span>` : html`<span class="badge bad">disabled</span>`}
          ${user.mustChangePassword ? html`<br><span class="hint">must change password</span>` : nothing}</td>
        <td data-label="Actions" class="actions"><div class="row">
          ${user.me ? html`<span class="hint">that is you</span>` : html`
            <button type="button" class="small" ?disabled=${busy}
              @click=${() => update(app, user, { enabled: !user.enabled }, user.enabled ? 'Disabled' : 'Enabled')}>
              ${user.enabled ? 'Disable' : 'Enable'}</button>
            <button type="button" class="small" ?disabled=${busy}
              @click=${() => update(app, user, { admin: !user.admin }, user.admin ? 'No longer admin' : 'Now admin')}>
              ${user.admin ? 'Remove admin' : 'Make admin'}</button>
            <button type="button" class="small" ?disabled=${busy}
              @click=${() => { state.passwordFor = user.id; app.update(); }}>Set password</button>
            <button type="button" class="small danger" ?disabled=${busy} @click=${() => remove(app, user)}>Delete</button>`}
        </div>${problem ? errorBox(problem) : nothing}</td>
      </tr>${passwordRow(app, user)}`;
  });
}

export const usersPage = {
  title: 'Users',
  admin: true,
  enter(app) {
    users = resource(() => api.get('/v3/users'), () => app.update());
    Object.assign(state, { creating: false, createError: null, rowBusy: '', rowError: null, passwordFor: '' });
    users.load();
    const reload = debounce(() => users.load(), 300);
    off = app.live.on((message) => { if (message.resourceType === 'user') reload(); });
  },
  leave() {
    if (off) off();
    off = null;
  },
  view(app) {
    return html`${heading('Users')}
      ${show(users, 'the users', (data) => html`
        <section class="panel" aria-labelledby="new-user">
          <h2 id="new-user">Create a user</h2>
          <form class="inline" id="create-user" @submit=${(event) => create(app, event)}>
            <label>Username <input name="username" required autocomplete="off" autocapitalize="off" spellcheck="false"></label>
            <label>Password <input name="password" type="password" required minlength="12" autocomplete="new-password"></label>
            <label>Display name <input name="name" autocomplete="off"></label>
            <label class="check"><input type="checkbox" name="admin"> Admin</label>
            <label class="check"><input type="checkbox" name="mustChangePassword" checked> Must change password at first login</label>
            <button class="primary" type="submit" ?disabled=${state.creating}>${state.creating ? 'Creating…' : 'Create user'}</button>
          </form>
          ${errorBox(state.createError)}
        </section>
        <div class="table-wrap"><table id="users" class="cards-on-phone">
          <thead><tr><th scope="col">Username</th><th scope="col">Name</th><th scope="col">Role</th>
            <th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
          <tbody>${userRows(app, data.data || [])}</tbody>
        </table></div>`)}`;
  },
};
