// /shell (admin): a terminal (xterm.js) on /v3/shell, Kubernetes' base64.channel.k8s.io framing:
// client frames "0"+base64(stdin) and "4"+base64({"Width","Height"}); server frames "1"+base64
// (output) and "3"+base64(final status). The session cookie authenticates the WebSocket.
// The terminal follows its box (fit addon); paste is xterm's own (bracketed when the shell asks);
// every KEEPALIVE_MS an unchanged size is sent again (a no-op for the shell) so idle links are
// not dropped by intermediaries watching client traffic; leaving the page closes the socket.

import { html, nothing } from '/static/vendor/lit-html/lit-html.js';
import { heading } from '../ui.js';

const SUBPROTOCOL = 'base64.channel.k8s.io';
const KEEPALIVE_MS = 30000;
const encoder = new TextEncoder();

let session = null;
const state = { status: 'idle', message: '' };

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

class ShellSession {
  constructor(app, Terminal, FitAddon, box) {
    this.app = app;
    this.term = new Terminal({
      cursorBlink: true,
      convertEol: false,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: '#000000' },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(box);
    this.resizeObserver = new ResizeObserver(() => this.refit());
    this.resizeObserver.observe(box);
    // Shift+Tab leaves the terminal (Tab itself goes to the shell, for completion).
    this.term.attachCustomKeyEventHandler((event) => !(event.key === 'Tab' && event.shiftKey));
    this.term.onData((data) => this.send('0', encoder.encode(data)));
    this.term.onResize(({ cols, rows }) => this.sendSize(cols, rows));
    this.keepalive = setInterval(() => this.sendSize(this.term.cols, this.term.rows), KEEPALIVE_MS);
    this.refit();
    this.connect();
  }

  refit() {
    try { this.fit.fit(); } catch { /* the box is not laid out yet */ }
  }

  setStatus(status, message = '') {
    state.status = status;
    state.message = message;
    this.app.update();
  }

  connect() {
    const url = new URL('/v3/shell', window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.setStatus('connecting');
    this.finished = false;
    const socket = new WebSocket(url, [SUBPROTOCOL]);
    this.socket = socket;
    socket.onopen = () => {
      this.setStatus('connected');
      this.sendSize(this.term.cols, this.term.rows);
      this.term.focus();
    };
    socket.onmessage = (event) => {
      const frame = String(event.data);
      const channel = frame[0];
      const payload = fromBase64(frame.slice(1));
      if (channel === '1' || channel === '2') this.term.write(payload);
      else if (channel === '3') {
        let result = {};
        try { result = JSON.parse(new TextDecoder().decode(payload)); } catch { /* keep {} */ }
        this.finished = true;
        this.setStatus('exited', result.message || result.status || '');
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.finished || state.status === 'closed') return;
      const why = state.status === 'connecting'
        ? 'the server refused the shell (admins only) or cannot be reached'
        : event.reason || `connection closed (code ${event.code})`;
      this.setStatus('disconnected', why);
    };
  }

  send(channel, bytes) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(channel + toBase64(bytes));
  }

  sendSize(cols, rows) {
    this.send('4', encoder.encode(JSON.stringify({ Width: cols, Height: rows })));
  }

  close() {
    if (this.socket) {
      const socket = this.socket;
      this.setStatus('closed', 'you closed the shell');
      socket.close(1000, 'closed by the user');
    }
  }

  async paste() {
    try {
      const text = await navigator.clipboard.readText();
      if (text) this.term.paste(text);
      this.term.focus();
    } catch {
      this.setStatus(state.status, 'the browser did not give the clipboard: paste with Ctrl+Shift+V or the context menu');
    }
  }

  dispose() {
    clearInterval(this.keepalive);
    this.resizeObserver.disconnect();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, 'left the page');
    }
    this.term.dispose();
  }
}

async function start(app) {
  state.status = 'loading';
  app.update();
  let xterm;
  let fit;
  try {
    [xterm, fit] = await Promise.all([
      import('/static/vendor/xterm/xterm.mjs'),
      import('/static/vendor/xterm-addon-fit/addon-fit.mjs'),
    ]);
  } catch (error) {
    state.status = 'disconnected';
    state.message = `the terminal could not be loaded: ${error.message}`;
    app.update();
    return;
  }
  if (app.page !== shellPage) return;
  await new Promise((resolve) => requestAnimationFrame(resolve));
  const box = document.getElementById('terminal');
  if (!box || session) return;
  session = new ShellSession(app, xterm.Terminal, fit.FitAddon, box);
}

const LABELS = {
  idle: 'Not connected',
  loading: 'Loading the terminal…',
  connecting: 'Connecting…',
  connected: 'Connected',
  exited: 'The shell exited',
  closed: 'Closed',
  disconnected: 'Disconnected',
};

export const shellPage = {
  title: 'Shell',
  admin: true,
  enter(app) {
    if (session) { session.dispose(); session = null; }
    state.status = 'idle';
    state.message = '';
    if (app.me && app.me.admin) start(app);
  },
  leave() {
    if (session) session.dispose();
    session = null;
  },
  view(app) {
    if (!(app.me && app.me.admin)) {
      return html`${heading('Shell')}<div class="error" role="alert" data-status="403"><strong>Not allowed.</strong>
        The shell is for admins only.</div>`;
    }
    const open = state.status === 'connected';
    const reconnect = () => { if (session) session.connect(); else start(app); };
    const tone = open ? 'ok' : state.status === 'disconnected' ? 'bad' : 'muted';
    return html`${heading('Shell')}
      <p class="lead">A shell on the server's host, as the user the server runs as. Every opening and closing is in the audit log.</p>
      <div class="shell-bar">
        <span class="badge ${tone} dot" id="shell-state" data-state=${state.status} role="status">${LABELS[state.status]}</span>
        ${state.message ? html`<span class="hint" id="shell-message">${state.message}</span>` : nothing}
        <button type="button" class="small" ?disabled=${!open} @click=${() => session && session.paste()}>Paste</button>
        ${open ? html`<button type="button" class="small danger" @click=${() => session && session.close()}>Close</button>`
          : html`<button type="button" class="small primary" ?disabled=${['loading', 'connecting'].includes(state.status)}
            @click=${reconnect}>Connect</button>`}
      </div>
      <div class="terminal-box"><div id="terminal" aria-label="Terminal"></div></div>
      <p class="hint">Tab goes to the shell; Shift+Tab leaves the terminal.</p>`;
  },
};
