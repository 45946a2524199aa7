// Corral's web UI: the app shell (header, navigation, the page in <main>), the session, and
// routing on the URL path with the History API, so every page has its URL and back/forward
// work. Pages are modules in ./pages/ exporting {title, admin?, public?, enter, leave, view}.

import { html, render, nothing } from '/static/vendor/lit-html/lit-html.js';
import { api, onUnauthorized } from './api.js';
import { Live } from './live.js';
import { heading } from './ui.js';
import { auditPage } from './pages/audit.js';
import { clusterPage, clustersPage } from './pages/clusters.js';
import { dashboardPage } from './pages/dashboard.js';
import { keysPage } from './pages/keys.js';
import { loginPage } from './pages/login.js';
import { passwordPage } from './pages/password.js';
import { settingsPage } from './pages/settings.js';
import { shellPage } from './pages/shell.js';
import { usersPage } from './pages/users.js';

// The same paths as corral.server.ui.pages.PAGE_PATHS.
const ROUTES = [
  [/^\/$/, dashboardPage],
  [/^\/login$/, loginPage],
  [/^\/password$/, passwordPage],
  [/^\/users$/, usersPage],
  [/^\/api-keys$/, keysPage],
  [/^\/settings$/, settingsPage],
  [/^\/clusters$/, clustersPage],
  [/^\/clusters\/([^/]+)$/, clusterPage],
  [/^\/audit$/, auditPage],
  [/^\/shell$/, shellPage],
];

const NAV = [
  ['/', 'Dashboard', {}],
  ['/clusters', 'Clusters', {}],
  ['/users', 'Users', { admin: true }],
  ['/api-keys', 'API keys', {}],
  ['/settings', 'Settings', {}],
  ['/audit', 'Audit log', { admin: true, audit: true }],
  ['/shell', 'Shell', { admin: true }],
];

const notFoundPage = {
  title: 'Page not found',
  view: () => html`${heading('Page not found')}<p>There is no page at this address. <a href="/">Go to the dashboard</a>.</p>`,
};

const root = document.getElementById('app');
let booting = true;

/** Render into #app (the first time, drop the boot message: lit-html renders after it). */
function draw(template) {
  if (booting) {
    root.replaceChildren();
    booting = false;
  }
  render(template, root);
}

export const app = {
  me: null, // the logged-in user (GET /v3/users?me=true), null when logged out
  info: null, // GET /v3/ui/info
  live: new Live(),
  page: null,
  params: [],
  query: new URLSearchParams(),
  flash: '',
  menuOpen: false,
  scheduled: false,

  /** Re-render on the next frame (many changes, one render). */
  update() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      draw(shell());
    });
  },

  /** Go to a path of the UI (pushState; replace for redirects). */
  navigate(path, { replace = false } = {}) {
    if (replace) window.history.replaceState(null, '', path);
    else window.history.pushState(null, '', path);
    route();
  },

  /** Show a message at the top of the next page. */
  notify(message) {
    this.flash = message;
    this.update();
  },

  /** Who is logged in (null when nobody); also loads the server facts. */
  async loadSession() {
    try {
      const me = await api.get('/v3/users?me=true', { expect401: true });
      this.me = (me.data && me.data[0]) || null;
    } catch (error) {
      if (error.status === 401) this.me = null;
      else throw error;
    }
    if (this.me && !this.me.mustChangePassword) {
      this.info = await api.get('/v3/ui/info').catch(() => null);
      this.live.start();
    }
    return this.me;
  },

  /** Forget the session here (after logout, or when the server ended it). */
  endSession(message) {
    this.me = null;
    this.info = null;
    this.live.stop();
    if (message) this.flash = message;
  },

  async logout() {
    try {
      await api.post('/v3/tokens?action=logout', {});
    } catch (error) {
      if (error.status !== 401) {
        this.notify(`Logging out failed: ${error.message}`);
        return;
      }
    }
    this.endSession('You are logged out.');
    this.navigate('/login');
  },
};

function matchRoute(path) {
  for (const [pattern, page] of ROUTES) {
    const found = pattern.exec(path);
    if (found) return { page, params: found.slice(1).map(decodeURIComponent) };
  }
  return { page: notFoundPage, params: [] };
}

let routing = Promise.resolve();

function route() {
  routing = routing.then(routeNow, routeNow);
  return routing;
}

async function routeNow() {
  const { pathname, search } = window.location;
  const { page, params } = matchRoute(pathname);
  if (!page.public && app.me === null) {
    try {
      await app.loadSession();
    } catch (error) {
      showBootError(error);
      return;
    }
    if (app.me === null) {
      const next = pathname === '/' ? '' : `?next=${encodeURIComponent(pathname + search)}`;
      window.history.replaceState(null, '', `/login${next}`);
      return enter(loginPage, []);
    }
  }
  if (app.me && app.me.mustChangePassword && page !== passwordPage && page !== loginPage) {
    window.history.replaceState(null, '', '/password');
    return enter(passwordPage, []);
  }
  return enter(page, params);
}

function enter(page, params) {
  const changed = app.page !== page || String(app.params) !== String(params);
  app.query = new URLSearchParams(window.location.search);
  if (changed && app.page && app.page.leave) app.page.leave(app);
  app.page = page;
  app.params = params;
  app.menuOpen = false;
  document.title = `${page.title} · Corral`;
  if (page.enter) page.enter(app, params);
  draw(shell());
  if (changed) {
    const target = page.focus ? document.querySelector(page.focus) : document.querySelector('main h1');
    if (target) target.focus();
  }
}

function showBootError(error) {
  draw(html`<main id="main" tabindex="-1"><div class="error" role="alert">
    The server did not answer as expected: ${error.message}
    <button type="button" class="small" @click=${() => route()}>Try again</button></div></main>`);
}

function navLinks() {
  if (!app.me || app.me.mustChangePassword) return nothing;
  const auditOn = app.info && app.info.audit && app.info.audit.enabled;
  const here = window.location.pathname;
  return NAV.filter(([, , only]) => (!only.admin || app.me.admin) && (!only.audit || auditOn))
    .map(([path, label]) => {
      const current = path === '/' ? here === '/' : here === path || here.startsWith(`${path}/`);
      return html`<a href=${path} aria-current=${current ? 'page' : 'false'}>${label}</a>`;
    });
}

function header() {
  if (app.page && app.page.public) return nothing;
  const toggle = () => { app.menuOpen = !app.menuOpen; app.update(); };
  return html`<header class="top">
    <a class="brand" href="/"><img src="/static/favicon.svg" alt="">Corral</a>
    ${app.me ? html`<button type="button" class="menu-toggle" aria-expanded=${app.menuOpen ? 'true' : 'false'}
        aria-controls="nav" @click=${toggle}>Menu</button>` : nothing}
    <nav id="nav" class=${app.menuOpen ? 'nav open' : 'nav'} aria-label="Main">
      ${navLinks()}
      ${app.me ? html`<span class="account">
        <span class="who">${app.me.username}${app.me.admin ? ' (admin)' : ''}</span>
        ${app.me.mustChangePassword ? nothing : html`<a href="/password">Change password</a>`}
        <button type="button" class="small" @click=${() => app.logout()}>Log out</button>
      </span>` : nothing}
    </nav>
  </header>`;
}

function shell() {
  const page = app.page || notFoundPage;
  const flash = app.flash;
  return html`${header()}
    <main id="main" tabindex="-1">
      <div role="status" aria-live="polite">${flash ? html`<p class="notice">${flash}
        <button type="button" class="small" @click=${() => { app.flash = ''; app.update(); }}>Dismiss</button></p>` : nothing}</div>
      ${page.view(app)}
    </main>`;
}

// Links inside the UI change the page without reloading it.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin || url.pathname.startsWith('/static/') || url.pathname.startsWith('/v3')) return;
  if (url.pathname === window.location.pathname && url.search === window.location.search && url.hash) return;
  event.preventDefault();
  if (url.pathname !== window.location.pathname || url.search !== window.location.search) app.flash = '';
  app.navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => route());

onUnauthorized(() => {
  if (app.page === loginPage || app.me === null) return;
  app.endSession('Your session has ended: log in again.');
  const next = window.location.pathname + window.location.search;
  app.navigate(`/login?next=${encodeURIComponent(next)}`, { replace: true });
});

app.live.on((message) => {
  if (message.name === 'state' && message.state === 'ended' && app.me) {
    app.endSession('Your session has ended: log in again.');
    app.navigate('/login', { replace: true });
  }
});

route();
