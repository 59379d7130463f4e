// SPDX-License-Identifier: MIT
// DOM helpers. Everything that came from the server (and so possibly from a
// sandbox's guest: command output, file names, diffs) goes into the page as
// text nodes or attribute values, never as HTML.

// h('button.primary#id', {onclick, type}, child, ...) -> element
export function h(spec, attrs, ...children) {
	const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec) || [];
	const el = document.createElement(m[1] || 'div');
	for (const part of (m[2] || '').match(/[.#][\w-]+/g) || []) {
		if (part[0] === '.') el.classList.add(part.slice(1));
		else el.id = part.slice(1);
	}
	if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
		children.unshift(attrs);
		attrs = null;
	}
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false) continue;
		if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
		else if (k === 'class') el.className = [el.className, v].filter(Boolean).join(' ');
		else if (k === 'dataset') Object.assign(el.dataset, v);
		else if (k === 'value') el.value = v;
		else if (k === 'checked') el.checked = !!v;
		else if (v === true) el.setAttribute(k, '');
		else el.setAttribute(k, String(v));
	}
	append(el, children);
	return el;
}

// el.append(...) that skips null/undefined/false and flattens arrays.
export function add(el, ...children) {
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children) {
		if (c === null || c === undefined || c === false) continue;
		if (Array.isArray(c)) append(el, c);
		else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
}

export function clear(el, ...children) {
	el.replaceChildren();
	append(el, children);
	return el;
}

// State blocks: every data view shows one of these before/instead of data.
export const loading = (what = 'Loading…') => h('p.state.loading', { role: 'status' }, what);
export const empty = (what, ...more) => h('div.state.empty', h('p', what), ...more);
export function errorBox(err, retry) {
	const msg = err && err.message ? err.message : String(err);
	return h('div.state.error', { role: 'alert' },
		h('p', h('strong', err && err.status ? `Error ${err.status}: ` : 'Error: '), msg),
		retry ? h('button', { type: 'button', onclick: retry }, 'Retry') : null);
}

export function toast(msg, kind = 'info') {
	const box = document.getElementById('toasts');
	const t = h(`div.toast.${kind}`, msg);
	box.append(t);
	setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

// Runs fn while btn is disabled; shows errors as a toast. Returns fn's value.
export async function busy(btn, fn) {
	const label = btn ? btn.textContent : '';
	if (btn) { btn.disabled = true; btn.setAttribute('aria-busy', 'true'); }
	try {
		return await fn();
	} catch (e) {
		if (e.name !== 'AbortError') toast(e.message || String(e), 'error');
		return undefined;
	} finally {
		if (btn) { btn.disabled = false; btn.removeAttribute('aria-busy'); btn.textContent = label; }
	}
}

// A modal confirm built on <dialog>: resolves true/false.
export function confirmDialog(title, text, okLabel = 'OK', danger = false) {
	return new Promise(resolve => {
		const ok = h(danger ? 'button.danger' : 'button.primary', { type: 'submit', value: 'ok' }, okLabel);
		const dlg = h('dialog.confirm', { 'aria-labelledby': 'dlg-title' },
			h('form', { method: 'dialog' },
				h('h2#dlg-title', title),
				h('p', text),
				h('div.actions',
					h('button', { type: 'submit', value: 'cancel' }, 'Cancel'),
					ok)));
		dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok'); dlg.remove(); });
		document.body.append(dlg);
		dlg.showModal();
		ok.focus();
	});
}

export function fmtTime(s) {
	if (!s) return '—';
	const d = typeof s === 'number' ? new Date(s * 1000) : new Date(s);
	if (isNaN(d)) return String(s);
	const p = n => String(n).padStart(2, '0');
	return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAge(s) {
	if (!s) return '—';
	const t = new Date(s).getTime();
	if (isNaN(t)) return '—';
	return fmtDuration(Math.max(0, (Date.now() - t) / 1000));
}

export function fmtDuration(sec) {
	if (sec === null || sec === undefined || isNaN(sec)) return '—';
	sec = Math.round(sec);
	if (sec < 60) return `${sec}s`;
	if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
	if (sec < 86400) return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
	return `${Math.floor(sec / 86400)}d ${Math.floor((sec % 86400) / 3600)}h`;
}

export function fmtBytes(n) {
	if (n === null || n === undefined) return '—';
	const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
	let i = 0;
	while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
	return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

// TTL left for a sandbox created at created_at with ttl_seconds (0 = none).
export function ttlLeft(sb) {
	if (!sb.ttl_seconds) return 'none';
	const end = new Date(sb.created_at).getTime() + sb.ttl_seconds * 1000;
	const left = (end - Date.now()) / 1000;
	return left > 0 ? `${fmtDuration(left)} left` : 'expired';
}

export function badge(text, kind) {
	return h(`span.badge.b-${String(kind || text).toLowerCase().replace(/[^a-z0-9]+/g, '-')}`, text);
}

// A labelled form field: field('Name', input)
export function field(label, input, hint) {
	const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
	input.id = id;
	return h('div.field',
		h('label', { for: id }, label),
		input,
		hint ? h('small.hint', hint) : null);
}

// Renders a unified diff text as lines with +/- classes.
export function unifiedDiff(text) {
	const pre = h('pre.diff', { tabindex: '0' });
	for (const line of String(text).replace(/\n$/, '').split('\n')) {
		let cls = 'ctx';
		if (line.startsWith('+++') || line.startsWith('---')) cls = 'hdr';
		else if (line.startsWith('@@')) cls = 'hunk';
		else if (line.startsWith('+')) cls = 'add';
		else if (line.startsWith('-')) cls = 'del';
		pre.append(h(`span.${cls}`, line + '\n'));
	}
	return pre;
}

// Decodes base64 into text (for small text files' content_b64).
export function b64text(b64) {
	try {
		const bin = atob(b64);
		const bytes = Uint8Array.from(bin, c => c.charCodeAt(0));
		return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
	} catch {
		return '';
	}
}
