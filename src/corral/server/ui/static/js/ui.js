// Pieces every page uses: loading and error states in place, copy buttons, time formatting,
// and `resource`, a value loaded from the API with its loading/error state.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';

/** A loading line (announced to screen readers). */
export function loading(what) {
  return html`<p class="loading" role="status">Loading ${what}…</p>`;
}

/** An error shown where the content would be, with a retry button when given one. */
export function errorBox(error, retry) {
  if (!error) return nothing;
  const message = error.message || String(error);
  if (error.status === 403) {
    return html`<div class="error" role="alert" data-status="403"><strong>Not allowed.</strong> ${message}</div>`;
  }
  return html`<div class="error" role="alert" data-status=${error.status ?? ''}>
    ${message}
    ${retry ? html`<button type="button" class="small" @click=${retry}>Try again</button>` : nothing}
  </div>`;
}

/** A value loaded with `fetcher`; `changed()` is called whenever its state changes. */
export function resource(fetcher, changed) {
  const r = {
    data: null,
    error: null,
    loading: false,
    async load() {
      r.loading = true;
      changed();
      try {
        r.data = await fetcher();
        r.error = null;
      } catch (error) {
        r.error = error;
      } finally {
        r.loading = false;
        changed();
      }
      return r;
    },
  };
  return r;
}

/** Render a resource: loading first, its error in place (kept above stale data), else `body`. */
export function show(r, what, body) {
  if (r.error && r.data === null) return errorBox(r.error, () => r.load());
  if (r.data === null) return loading(what);
  return html`${r.error ? errorBox(r.error, () => r.load()) : nothing}${body(r.data)}`;
}

/** Copy text to the clipboard (async API, else a hidden textarea); resolves when done. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // fall back below (permission refused)
    }
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.className = 'offscreen-copy';
  document.body.append(area);
  area.select();
  try {
    if (!document.execCommand('copy')) throw new Error('copy refused');
  } finally {
    area.remove();
  }
}

/** A button copying `text`, saying "Copied" (or why not) for a moment. */
export function copyButton(text, label = 'Copy') {
  const clicked = async (event) => {
    const button = event.currentTarget;
    try {
      await copyText(text);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Copy failed: select the text and copy it';
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  };
  return html`<button type="button" class="small" @click=${clicked}>${label}</button>`;
}

/** A timestamp in the reader's locale ('' for none). */
export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** A page heading that receives focus after navigation. */
export function heading(text) {
  return html`<h1 tabindex="-1">${text}</h1>`;
}

/** The values of a submitted form as an object, and the form itself. */
export function formValues(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = {};
  for (const [key, value] of new FormData(form).entries()) values[key] = value;
  for (const box of form.querySelectorAll('input[type="checkbox"][name]')) values[box.name] = box.checked;
  return { form, values };
}

/** Call `fn` at most once per `ms`, the last call winning. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
