// /v3/subscribe: one WebSocket per logged-in tab, authenticated by the session cookie (never a
// token in the URL). Resumes after the last revision seen when it reconnects; reconnects with a
// growing pause. Listeners get every message plus {name: 'state', state} when the link changes:
// 'connecting', 'live', 'down' (lost; retrying), 'ended' (the session ended), 'idle' (stopped).

const MAX_PAUSE_MS = 8000;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_COMPACTED = 4410;

export class Live {
  constructor() {
    this.socket = null;
    this.listeners = new Set();
    this.state = 'idle';
    this.since = null; // when the link went down
    this.revision = null;
    this.failures = 0;
    this.timer = null;
    this.running = false;
  }

  /** Add a listener; returns the function that removes it. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(message) {
    for (const listener of [...this.listeners]) {
      try { listener(message); } catch (error) { console.error('a live-update listener failed', error); }
    }
  }

  setState(state) {
    if (state === 'down' && this.state !== 'down') this.since = new Date();
    if (state === 'live') this.since = null;
    this.state = state;
    this.emit({ name: 'state', state });
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000, 'logged out');
      this.socket = null;
    }
    this.revision = null;
    this.setState('idle');
  }

  connect() {
    const url = new URL('/v3/subscribe', window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.revision) url.searchParams.set('revision', this.revision);
    if (this.state !== 'down') this.setState('connecting');
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.failures = 0;
      this.setState('live');
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.revision) this.revision = message.revision;
      this.emit(message);
    };
    socket.onclose = (event) => {
      this.socket = null;
      if (!this.running) return;
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.running = false;
        this.setState('ended');
        return;
      }
      if (event.code === CLOSE_COMPACTED) this.revision = null;
      this.setState('down');
      const pause = Math.min(MAX_PAUSE_MS, 500 * 2 ** this.failures);
      this.failures += 1;
      this.timer = setTimeout(() => { if (this.running) this.connect(); }, pause);
    };
  }
}
