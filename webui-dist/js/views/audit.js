// SPDX-License-Identifier: MIT
// Audit log (reviewer or admin): GET /v1/audit with filters, and the result
// of the hash-chain check GET /v1/audit/verify.
import { get, enc } from '../api.js';
import { h, clear, loading, empty, errorBox, busy, field, fmtTime } from '../ui.js';

export async function render(main, _params, query) {
	const verify = h('div.verify', loading('Checking the hash chain…'));
	const list = h('div', loading('Loading the audit log…'));
	const sandbox = h('input', { name: 'sandbox_id', value: query.get('sandbox_id') || '', autocomplete: 'off', spellcheck: 'false' });
	const action = h('input', { name: 'action', value: query.get('action') || '', placeholder: 'e.g. sandbox.create', autocomplete: 'off', list: 'audit-actions' });
	const since = h('input', { name: 'since', type: 'datetime-local', value: query.get('since') || '' });
	const limit = h('select', { name: 'limit' }, ['50', '100', '500', '1000'].map(v => h('option', { value: v, selected: v === (query.get('limit') || '100') }, v)));
	const actions = h('datalist#audit-actions', ['http.request', 'sandbox.create', 'sandbox.destroy', 'command.run', 'snapshot.create', 'snapshot.restore', 'diff.create', 'approval.decide', 'token.create'].map(a => h('option', { value: a })));
	const btn = h('button.primary', { type: 'submit' }, 'Filter');
	const verifyBtn = h('button', { type: 'button', onclick: ev => busy(ev.currentTarget, runVerify) }, 'Verify again');

	main.append(
		h('div.pagehead', h('h1', 'Audit log'), verifyBtn),
		verify,
		h('form.card.auditfilters', {
			onsubmit: ev => { ev.preventDefault(); busy(btn, load); },
		}, h('div.grid', field('Sandbox id', sandbox), field('Action', action), field('Since', since), field('Rows', limit)), actions,
		h('div.formfoot', btn)),
		list);

	async function runVerify() {
		try {
			const v = await get('/v1/audit/verify');
			clear(verify, v.ok ?
				h('div.verdict.ok', { role: 'status' }, h('strong', 'Chain intact. '), `${v.rows} rows verified; head #${v.head ? v.head.id : '—'} `, h('span.mono.sub', v.head ? v.head.hash.slice(0, 16) + '…' : ''),
					v.anchor && v.anchor.ok === false ? ' (anchor mismatch)' : '') :
				h('div.verdict.fail', { role: 'alert' }, h('strong', 'Chain broken. '), v.problem || '', v.first_bad_id ? ` First bad row: #${v.first_bad_id}.` : '',
					v.problems && v.problems.length ? h('ul', v.problems.slice(0, 20).map(p => h('li', `#${p.id} ${p.kind}: ${p.message}`))) : null));
		} catch (e) {
			clear(verify, errorBox(e, runVerify));
		}
	}

	async function load() {
		const q = new URLSearchParams();
		if (sandbox.value.trim()) q.set('sandbox_id', sandbox.value.trim());
		if (action.value.trim()) q.set('action', action.value.trim());
		if (since.value) q.set('since', new Date(since.value).toISOString().replace(/\.\d+Z$/, 'Z'));
		q.set('limit', limit.value);
		try {
			const r = await get(`/v1/audit?${q}`);
			const ev = (r.events || []).slice().reverse();
			clear(list, ev.length ? h('div.tablewrap', h('p.sub', `${ev.length} event(s), newest first`), h('table.data.audit',
				h('thead', h('tr', ['#', 'Time', 'Actor', 'Action', 'Sandbox', 'Status', 'Details'].map(t => h('th', { scope: 'col' }, t)))),
				h('tbody', ev.map(e => h('tr',
					h('td.mono.nowrap', { 'data-label': '#' }, String(e.id)),
					h('td.nowrap', { 'data-label': 'Time' }, fmtTime(e.at)),
					h('td.mono', { 'data-label': 'Actor' }, e.actor, e.role ? h('span.sub', ` ${e.role}`) : ''),
					h('td.mono.nowrap', { 'data-label': 'Action' }, e.action),
					h('td.mono', { 'data-label': 'Sandbox' }, e.sandbox_id ? h('a', { href: `#/sandboxes/${enc(e.sandbox_id)}` }, e.sandbox_id) : '—'),
					h('td', { 'data-label': 'Status' }, e.status ? String(e.status) : '—'),
					h('td', { 'data-label': 'Details' }, details(e.details))))))) :
				empty('No audit events match these filters.'));
		} catch (e) {
			clear(list, errorBox(e, load));
		}
	}

	await Promise.all([runVerify(), load()]);
}

function details(d) {
	if (!d || typeof d !== 'object') return '';
	if (d.method && d.path) return h('span.mono', `${d.method} ${d.path}${d.query ? `?${d.query}` : ''}${d.phase ? ` (${d.phase})` : ''}`);
	const s = JSON.stringify(d);
	return s.length > 160 ? h('details', h('summary.mono', s.slice(0, 120) + '…'), h('pre.out', JSON.stringify(d, null, 2))) : h('span.mono', s);
}
