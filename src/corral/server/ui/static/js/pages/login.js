// /login: the local provider's login with the session cookie (responseType "cookie": the token
// never reaches this page). A refused login says only that the name or password is wrong.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api } from '../api.js';
import { formValues } from '../ui.js';

const LOGIN = '/v3-public/localProviders/local?action=login';
const state = { busy: false, error: '' };

/** A local path to return to after login (never another site, never the login page). */
export function safeNext(value) {
  if (!value || !value.startsWith('/') || value.startsWith('//') || value.startsWith('/login')) return '/';
  return value;
}

async function submit(app, event) {
  const { values } = formValues(event);
  state.busy = true;
  state.error = '';
  app.update();
  try {
    await api.post(LOGIN, {
      username: values.username,
      password: values.password,
      responseType: 'cookie',
      description: 'Corral web UI',
    }, { expect401: true });
  } catch (error) {
    state.busy = false;
    state.error = error.status === 401
      ? 'Invalid username or password.'
      : `Logging in failed: ${error.message}`;
    app.update();
    document.getElementById('login-password')?.select();
    return;
  }
  try {
    await app.loadSession();
  } catch (error) {
    state.busy = false;
    state.error = `Logged in, but the server did not answer: ${error.message}`;
    app.update();
    return;
  }
  state.busy = false;
  app.flash = '';
  const next = safeNext(app.query.get('next'));
  app.navigate(app.me && app.me.mustChangePassword ? '/password' : next, { replace: true });
}

export const loginPage = {
  title: 'Log in',
  public: true,
  focus: '#login-username',
  enter() {
    state.busy = false;
    state.error = '';
  },
  view(app) {
    return html`<section class="login panel" aria-labelledby="login-title">
      <div class="brand-big"><img src="/static/favicon.svg" alt="">Corral</div>
      <h1 id="login-title" tabindex="-1">Log in</h1>
      <form class="stack" @submit=${(event) => submit(app, event)} novalidate>
        <label>Username
          <input id="login-username" name="username" autocomplete="username" required autocapitalize="off" spellcheck="false">
        </label>
        <label>Password
          <input id="login-password" name="password" type="password" autocomplete="current-password" required>
        </label>
        ${state.error ? html`<p class="error" role="alert" id="login-error">${state.error}</p>` : nothing}
        <button class="primary" type="submit" ?disabled=${state.busy}>${state.busy ? 'Logging in…' : 'Log in'}</button>
      </form>
    </section>`;
  },
};
