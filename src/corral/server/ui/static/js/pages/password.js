// /password: change your own password. After the first login with a generated bootstrap
// password (mustChangePassword) every other page leads here until it is changed.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api } from '../api.js';
import { formValues, heading } from '../ui.js';

const MIN_LENGTH = 12; // the API's minimum (Rancher's password-min-length default)
const state = { busy: false, error: '' };

async function submit(app, event) {
  const { form, values } = formValues(event);
  if (values.newPassword.length < MIN_LENGTH) {
    state.error = `The new password needs at least ${MIN_LENGTH} characters.`;
  } else if (values.newPassword !== values.confirm) {
    state.error = 'The two new passwords differ.';
  } else if (values.newPassword === values.currentPassword) {
    state.error = 'The new password must differ from the current one.';
  } else {
    state.error = '';
  }
  if (state.error) {
    app.update();
    return;
  }
  state.busy = true;
  app.update();
  try {
    await api.post('/v3/users?action=changepassword', {
      currentPassword: values.currentPassword,
      newPassword: values.newPassword,
    });
  } catch (error) {
    state.busy = false;
    state.error = error.message;
    app.update();
    return;
  }
  form.reset();
  const forced = app.me && app.me.mustChangePassword;
  await app.loadSession().catch(() => null);
  state.busy = false;
  app.flash = 'Your password is changed.';
  app.navigate(forced ? '/' : '/password', { replace: forced });
}

export const passwordPage = {
  title: 'Change password',
  focus: '#current-password',
  enter() {
    state.busy = false;
    state.error = '';
  },
  view(app) {
    const forced = app.me && app.me.mustChangePassword;
    return html`${heading(forced ? 'Choose a new password' : 'Change password')}
      ${forced ? html`<p class="warning" id="must-change">This account still has the password it was created with.
        Choose your own password to continue.</p>` : nothing}
      <form class="stack panel" @submit=${(event) => submit(app, event)} novalidate>
        <input class="sr-only" name="username" autocomplete="username" .value=${app.me ? app.me.username : ''}
          readonly tabindex="-1" aria-hidden="true">
        <label>Current password
          <input id="current-password" name="currentPassword" type="password" autocomplete="current-password" required>
        </label>
        <label>New password
          <input name="newPassword" type="password" autocomplete="new-password" required minlength=${MIN_LENGTH}
            aria-describedby="password-hint">
        </label>
        <span class="hint" id="password-hint">At least ${MIN_LENGTH} characters.</span>
        <label>New password again
          <input name="confirm" type="password" autocomplete="new-password" required>
        </label>
        ${state.error ? html`<p class="error" role="alert">${state.error}</p>` : nothing}
        <button class="primary" type="submit" ?disabled=${state.busy}>${state.busy ? 'Saving…' : 'Change password'}</button>
      </form>`;
  },
};
