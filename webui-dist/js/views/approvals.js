// SPDX-License-Identifier: MIT
// Approvals inbox: requests by state (pending first), each with its change;
// reviewers (and admins) approve or reject with a comment, and apply an
// approved change to production with its output streamed as it comes
// (POST /v1/approvals/{id}/apply, NDJSON). Agents see the requests but no
// decision buttons (the server refuses them anyway: 403).
import { api, get, post, enc, can, readNdjson } from '../api.js';
import { h, add, clear, loading, empty, errorBox, busy, toast, badge, fmtTime, field, confirmDialog } from '../ui.js';

const FILTERS = [['pending', 'Pending'], ['approved', 'Approved'], ['', 'All']];
const POLL_MS = 5000;

export async function render(main, _params, query) {
	let alive = true, timer = null, applying = 0;
	const want = query.get('state') === 'all' ? '' : query.get('state');
	const filter = FILTERS.some(f => f[0] === want) ? want : (query.get('id') ? '' : 'pending');
	const focusId = query.get('id');
	const list = h('div', loading('Loading approvals…'));
	add(main,
		h('div.pagehead', h('h1', 'Approvals'),
			h('nav.filters', { 'aria-label': 'Filter by state' }, FILTERS.map(([v, l]) =>
				h('a.button', { href: `#/approvals${v ? `?state=${v}` : '?state=all'}`, 'aria-current': v === filter ? 'page' : null }, l)))),
		can('reviewer') ? null : h('p.note', 'You are signed in with an agent token: you can see and ask for approvals; a reviewer decides them.'),
		list);

	async function load(force) {
		clearTimeout(timer);
		const typing = [...list.querySelectorAll('textarea')].some(t => t.value || t === document.activeElement);
		if (!force && (typing || applying)) { timer = setTimeout(load, POLL_MS); return; }
		try {
			const r = await get(`/v1/approvals${filter ? `?state=${enc(filter)}` : ''}`);
			if (!alive) return;
			const items = (r.approvals || []).slice().sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
			clear(list, items.length ? h('ul.approvals', items.map(a => item(a))) :
				empty(filter === 'pending' ? 'No pending approvals: nothing is waiting for a decision.' : 'No approvals here.'));
			if (focusId) {
				const el = list.querySelector(`[data-id="${CSS.escape(focusId)}"]`);
				if (el && force) { el.classList.add('focus'); el.scrollIntoView({ block: 'center' }); }
			}
		} catch (e) {
			if (alive) clear(list, errorBox(e, () => load(true)));
		}
		if (alive) timer = setTimeout(load, POLL_MS);
	}

	function item(a) {
		const kind = { pending: 'warn', approved: 'ok', rejected: 'fail', applying: 'running', applied: 'ok', failed: 'fail' }[a.state];
		const li = h('li.card.approval', { dataset: { id: a.id, state: a.state } },
			h('div.apphead',
				h('h2', a.summary || '(no summary)'),
				badge(a.state, kind)),
			h('dl.facts',
				h('div', h('dt', 'Kind'), h('dd', a.kind || 'change')),
				a.sandbox_id ? h('div', h('dt', 'Sandbox'), h('dd', h('a.mono', { href: `#/sandboxes/${enc(a.sandbox_id)}` }, a.sandbox_id))) : null,
				a.change_id ? h('div', h('dt', 'Change'), h('dd', h('a.mono', { href: `#/changes/${enc(a.change_id)}` }, 'review the change'))) : null,
				a.playbook ? h('div', h('dt', 'Playbook'), h('dd.mono', a.playbook)) : null,
				h('div', h('dt', 'Asked by'), h('dd', `${a.requested_by || 'anonymous'}${a.requested_role ? ` (${a.requested_role})` : ''}`)),
				h('div', h('dt', 'Asked'), h('dd', fmtTime(a.created_at))),
				a.decided_by ? h('div', h('dt', 'Decided by'), h('dd', `${a.decided_by}, ${fmtTime(a.decided_at)}`)) : null),
			a.details && a.details.command ? h('p', 'Command: ', h('code', a.details.command)) : null,
			a.comment ? h('blockquote.comment', a.comment) : null);
		if (a.state === 'pending' && can('reviewer')) li.append(decide(a));
		if (a.state === 'approved' && can('reviewer') && a.kind !== 'question' && a.kind !== 'command') li.append(apply(a));
		if (a.apply) add(li, lastApply(a));
		return li;
	}

	function decide(a) {
		const comment = h('textarea', { name: 'comment', rows: 2, maxlength: 2000, placeholder: 'Why (recorded in the audit log)' });
		const approve = h('button.primary', { type: 'button' }, 'Approve');
		const reject = h('button.danger', { type: 'button' }, 'Reject');
		const act = (verb, btn) => busy(btn, async () => {
			approve.disabled = reject.disabled = true;
			try {
				await post(`/v1/approvals/${enc(a.id)}/${verb}`, comment.value.trim() ? { comment: comment.value.trim() } : {});
				toast(verb === 'approve' ? 'Approved' : 'Rejected');
				comment.value = '';
				await load(true);
			} finally { approve.disabled = reject.disabled = false; }
		});
		approve.addEventListener('click', () => act('approve', approve));
		reject.addEventListener('click', () => act('reject', reject));
		return h('div.decide', field('Comment', comment), h('div.actions', approve, reject));
	}

	function apply(a) {
		const btn = h('button.primary', { type: 'button' }, 'Apply to production');
		const check = h('button', { type: 'button' }, 'Check run (changes nothing)');
		const out = h('pre.out.applyout', { tabindex: '0', hidden: true, 'aria-live': 'polite' });
		const run = async (b, dry) => {
			if (!dry && !await confirmDialog('Apply to production?', 'The approved playbook runs against the production hosts of the configuration over SSH.', 'Apply', true)) return;
			applying++;
			let final = null;
			out.hidden = false;
			clear(out, dry ? '== check run (ansible-playbook --check)\n' : '');
			btn.disabled = check.disabled = true;
			busy(b, async () => {
				try {
					const res = await api('POST', `/v1/approvals/${enc(a.id)}/apply`, dry ? { check: true } : {}, { raw: true, accept: 'application/x-ndjson' });
					const ct = res.headers.get('Content-Type') || '';
					if (ct.includes('ndjson')) {
						await readNdjson(res, obj => {
							if ('exit_code' in obj && 'ok' in obj) final = obj;
							out.append(lineOf(obj));
							out.scrollTop = out.scrollHeight;
						});
					} else {
						out.append(JSON.stringify(await res.json(), null, 2));
					}
					toast(dry ? 'Check run finished' : 'Apply finished');
				} finally {
					btn.disabled = check.disabled = false;
					if (dry) applying--;
					// After a real apply the list stays as it is (polling paused) so the
					// output stays readable; the card shows the new state.
					else if (final && final.state) {
						const li = out.closest('li');
						const old = li && li.querySelector('.apphead .badge');
						if (old) old.replaceWith(badge(final.state, final.state === 'applied' ? 'ok' : 'fail'));
						if (li) li.dataset.state = final.state;
						btn.remove();
						check.remove();
					}
				}
			});
		};
		btn.addEventListener('click', () => run(btn, false));
		check.addEventListener('click', () => run(check, true));
		return h('div.applybox', h('div.actions', btn, check), out);
	}

	await load(true);
	return () => { alive = false; clearTimeout(timer); };
}

// The stored result of the last apply (or check run) of an approval.
function lastApply(a) {
	const r = a.apply || {};
	const what = r.ok ? 'succeeded' : 'failed';
	return h('details.lastapply',
		h('summary', `Last apply ${what}${r.exit_code !== undefined && r.exit_code !== null ? ` (exit ${r.exit_code})` : ''}`,
			r.error ? h('span.sub', ` — ${r.error}`) : ''),
		r.output_tail ? h('pre.out.applyout', { tabindex: '0' }, r.output_tail) : h('p.sub', 'No output was kept.'),
		r.output_truncated ? h('p.sub', `Only the end of ${r.output_bytes} bytes of output is kept.`) : null);
}

// One NDJSON line of an apply as text.
function lineOf(o) {
	if ('exit_code' in o && 'ok' in o)
		return `\n== ${o.state || (o.ok ? 'applied' : 'failed')} (exit ${o.exit_code ?? '?'})${o.error ? `: ${o.error}` : ''}\n`;
	if (typeof o.data === 'string') return o.data.endsWith('\n') ? o.data : o.data + '\n';
	if (typeof o.line === 'string') return o.line + '\n';
	if (typeof o.text === 'string') return o.text + '\n';
	if (typeof o.message === 'string') return `${o.host ? `[${o.host}] ` : ''}${o.message}\n`;
	return JSON.stringify(o) + '\n';
}
