// SPDX-License-Identifier: MIT
// The REST client: bearer token from sessionStorage, JSON in and out, errors
// as ApiError with the server's {"error", "code", "details"}.

const KEY = 'fluid.token';

export class ApiError extends Error {
	constructor(status, message, details) {
		super(message);
		this.status = status;
		this.details = details;
	}
}

export const session = {
	get token() { return sessionStorage.getItem(KEY) || ''; },
	set token(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); },
	whoami: null, // {token_id, role, name}
};

const RANK = { agent: 1, reviewer: 2, admin: 3 };
// True when the signed-in token has at least role r.
export function can(r) {
	return !!session.whoami && (RANK[session.whoami.role] || 0) >= RANK[r];
}

// Listeners for 401 (token revoked or expired): the app signs out.
const onUnauthorized = [];
export function whenUnauthorized(fn) { onUnauthorized.push(fn); }

async function errorOf(res) {
	let msg = `${res.status} ${res.statusText}`, details = null;
	try {
		const j = await res.json();
		if (j && j.error) { msg = j.error; details = j.details ?? null; }
	} catch { /* not JSON */ }
	return new ApiError(res.status, msg, details);
}

// api(method, path, body?, opts?) -> parsed JSON (null for 204).
// opts.raw: return the Response (for downloads and streams).
// opts.body: a Blob/File/string sent as is (uploads).
export async function api(method, path, body, opts = {}) {
	const headers = {};
	if (session.token) headers.Authorization = `Bearer ${session.token}`;
	let payload;
	if (opts.body !== undefined) {
		payload = opts.body;
		headers['Content-Type'] = 'application/octet-stream';
	} else if (body !== undefined) {
		payload = JSON.stringify(body);
		headers['Content-Type'] = 'application/json';
	}
	if (opts.accept) headers.Accept = opts.accept;
	let res;
	try {
		res = await fetch(path, { method, headers, body: payload, signal: opts.signal });
	} catch (e) {
		if (e.name === 'AbortError') throw e;
		throw new ApiError(0, 'cannot reach the fluid server');
	}
	if (!res.ok) {
		const err = await errorOf(res);
		if (res.status === 401 && !opts.noSignout) onUnauthorized.forEach(fn => fn(err));
		throw err;
	}
	if (opts.raw) return res;
	if (res.status === 204) return null;
	const text = await res.text();
	return text ? JSON.parse(text) : null;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b, o) => api('POST', p, b === undefined ? {} : b, o);
export const del = (p, o) => api('DELETE', p, undefined, o);

// Reads an NDJSON response line by line: onLine(obj) for each.
export async function readNdjson(res, onLine) {
	const reader = res.body.getReader();
	const dec = new TextDecoder();
	let buf = '';
	for (;;) {
		const { value, done } = await reader.read();
		if (value) buf += dec.decode(value, { stream: true });
		let i;
		while ((i = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, i).trim();
			buf = buf.slice(i + 1);
			if (line) {
				let obj;
				try { obj = JSON.parse(line); } catch { obj = { text: line }; }
				onLine(obj);
			}
		}
		if (done) break;
	}
	if (buf.trim()) {
		try { onLine(JSON.parse(buf)); } catch { onLine({ text: buf }); }
	}
}

// ws://host/path?token=...: WebSocket URL of an API path (browsers cannot
// set headers on WebSockets; the server accepts the token as a query
// parameter there).
export function wsUrl(path, params = {}) {
	const u = new URL(path, location.href);
	u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
	for (const [k, v] of Object.entries({ token: session.token, ...params }))
		if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
	return u.toString();
}

export const enc = encodeURIComponent;
