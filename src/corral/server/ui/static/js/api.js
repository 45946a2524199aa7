// The v3 API over fetch: JSON in and out, the session cookie (HttpOnly: never seen here), and
// the CSRF cookie's value echoed in X-API-CSRF on every state-changing request.

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export const CSRF_COOKIE = 'CSRF';
export const CSRF_HEADER = 'X-API-CSRF';

/** An answer other than 2xx: the error envelope's status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The value of a cookie the page may read (the CSRF one), or ''. */
export function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return decodeURIComponent(rest.join('='));
  }
  return '';
}

let unauthorized = () => {};

/** Called with the error whenever a request is answered 401 (the session ended). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** One API request; resolves to the decoded JSON body, rejects with an ApiError. A write
 * refused for its CSRF token is sent once more when the answer brought a new CSRF cookie. */
export async function request(method, path, body, { expect401 = false, retried = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const token = SAFE_METHODS.has(method) ? '' : cookie(CSRF_COOKIE);
  if (token) headers[CSRF_HEADER] = token;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'Unreachable', 'The server cannot be reached. Check the connection, then try again.');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok && data && data.code === 'InvalidCSRFToken' && !retried && cookie(CSRF_COOKIE) !== token) {
    return request(method, path, body, { expect401, retried: true });
  }
  if (!response.ok) {
    const message = (data && data.message) || text.trim() || response.statusText || `HTTP ${response.status}`;
    const error = new ApiError(response.status, (data && data.code) || String(response.status), message);
    if (response.status === 401 && !expect401) unauthorized(error);
    throw error;
  }
  return data;
}

export const api = {
  get: (path, options) => request('GET', path, undefined, options),
  post: (path, body, options) => request('POST', path, body ?? {}, options),
  put: (path, body) => request('PUT', path, body),
  del: (path) => request('DELETE', path),
};

/** `/v3/<collection>/<id>` with the id encoded the way the API's links are. */
export function itemPath(collection, id) {
  return `/v3/${collection}/${encodeURIComponent(id).replace(/%3A/gi, ':')}`;
}
