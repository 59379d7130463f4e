// SPDX-License-Identifier: MIT
// Change review: a change job (POST /v1/sandboxes/{id}/changes, polled with
// GET /v1/changes/{id} while it runs): the trusted diff (files with unified
// diffs, packages, services, users and groups, commands run), the generated
// playbook's YAML, and the rehearsal result (verified, or the residual).
// From here an agent or reviewer asks for approval.
import { get, post, enc, can } from '../api.js';
import { h, add, clear, loading, empty, errorBox, busy, toast, badge, fmtTime, fmtBytes,
	unifiedDiff, b64text, field } from '../ui.js';

export async function render(main, [id]) {
	let alive = true, timer = null;
	const top = h('div', loading('Loading the change…'));
	const diffSlot = h('section.diffsec', { 'aria-labelledby': 'diff-h' });
	const pbSlot = h('section', { 'aria-labelledby': 'pb-h' });
	const tail = h('div');
	main.append(h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: '#/sandboxes' }, 'Sandboxes'), ' / '),
		h('h1', 'Change review'), top, diffSlot, pbSlot, tail);
	let shownDiff = null, shownPlaybook = null;

	async function load() {
		clearTimeout(timer);
		let chg;
		try {
			chg = (await get(`/v1/changes/${enc(id)}`)).change;
		} catch (e) {
			if (alive) clear(top, errorBox(e, load));
			return;
		}
		if (!alive) return;
		clear(top, summary(chg));
		clear(tail, rehearsal(chg), chg.state !== 'running' && chg.playbook && chg.diff_id ? askApproval(chg) : null);
		if (chg.diff_id && shownDiff !== chg.diff_id) {
			shownDiff = chg.diff_id;
			clear(diffSlot, h('h2#diff-h', 'What changed'), loading('Loading the diff…'));
			get(`/v1/sandboxes/${enc(chg.sandbox_id)}/diffs/${enc(chg.diff_id)}`)
				.then(r => { if (alive) clear(diffSlot, h('h2#diff-h', 'What changed'), diffView(r.diff)); })
				.catch(e => { if (alive) clear(diffSlot, h('h2#diff-h', 'What changed'), errorBox(e)); });
		}
		if (chg.playbook && shownPlaybook !== chg.playbook && chg.stage !== 'diff' && chg.stage !== 'queued' && chg.stage !== 'playbook') {
			shownPlaybook = chg.playbook;
			clear(pbSlot, h('h2#pb-h', 'Playbook'), loading('Loading the playbook…'));
			get(`/v1/ansible/playbooks/${enc(chg.playbook)}/export`)
				.then(r => { if (alive) clear(pbSlot, h('h2#pb-h', 'Playbook ', h('span.sub.mono', chg.playbook)), h('pre.yaml', { tabindex: '0' }, r.yaml || '')); })
				.catch(e => { if (alive) clear(pbSlot, h('h2#pb-h', 'Playbook'), errorBox(e)); });
		}
		if (chg.state === 'running') timer = setTimeout(load, 1500);
	}
	await load();
	return () => { alive = false; clearTimeout(timer); };
}

function summary(c) {
	const kind = { verified: 'ok', unverified: 'warn', failed: 'fail', interrupted: 'fail', running: 'running' }[c.state];
	const out = [
		h('dl.facts',
			h('div', h('dt', 'State'), h('dd', badge(c.state, kind), c.state === 'running' ? h('span.sub', ` ${c.stage}${c.rehearsal_stage ? ` / ${c.rehearsal_stage}` : ''}…`) : null)),
			h('div', h('dt', 'Sandbox'), h('dd', h('a.mono', { href: `#/sandboxes/${enc(c.sandbox_id)}` }, c.sandbox_id))),
			h('div', h('dt', 'Snapshots'), h('dd.mono', `${c.from_snapshot} → ${c.to_snapshot}`)),
			h('div', h('dt', 'Started'), h('dd', fmtTime(c.created_at))),
			c.stages_ms && c.stages_ms.total ? h('div', h('dt', 'Took'), h('dd', `${(c.stages_ms.total / 1000).toFixed(1)} s`)) : null,
			h('div', h('dt', 'Change id'), h('dd.mono', c.id))),
	];
	if (c.error) out.push(h('div.state.error', { role: 'alert' }, h('p', h('strong', 'The job failed: '), c.error)));
	if (c.state === 'running') out.push(loading(STAGES[c.stage] ? STAGES[c.stage](c) : `${c.stage}…`));
	return out;
}

const STAGES = {
	queued: () => 'Queued: waiting for a free job slot…',
	diff: () => 'Computing the trusted diff in an inspector VM…',
	playbook: () => 'Generating the playbook from the diff…',
	rehearsal: c => `Rehearsing the playbook on a fresh clone (${c.rehearsal_stage || 'starting'})…`,
};

function rehearsal(c) {
	if (c.state === 'running') return null; // the progress line on top says what runs
	const sec = h('section.rehearsal', { 'aria-labelledby': 'reh-h' }, h('h2#reh-h', 'Rehearsal'));
	if (c.verified === true) {
		sec.append(h('div.verdict.ok', h('strong', 'Verified. '),
			'Applied to a fresh clone of the same template, the playbook reproduces the sandbox\'s diff exactly, and a second run changed nothing.'));
	} else if (c.rehearsal || c.residual) {
		sec.append(h('div.verdict.warn', h('strong', 'Not verified. '), 'What the playbook does not reproduce (the residual) is listed below.'));
	} else {
		sec.append(h('div.verdict.none', c.error ? 'No rehearsal result: the job stopped before it.' : 'The playbook was not rehearsed.'));
	}
	const runs = c.rehearsal && c.rehearsal.runs;
	if (runs && runs.length)
		sec.append(h('table.data.compact',
			h('thead', h('tr', ['Run', 'Result', 'Changed', 'Failures', 'Unreachable'].map(t => h('th', { scope: 'col' }, t)))),
			h('tbody', runs.map((r, i) => h('tr',
				h('td', i === 0 ? 'apply' : 'reapply'),
				h('td', badge(r.ok ? 'ok' : `exit ${r.exit_code}`, r.ok ? 'ok' : 'fail')),
				h('td', String(r.changed ?? '—')),
				h('td', String(r.failures ?? '—')),
				h('td', String(r.unreachable ?? '—')))))));
	const residual = c.residual || [];
	if (residual.length)
		sec.append(h('table.data.residual',
			h('thead', h('tr', ['Kind', 'Name', 'In the sandbox', 'After the playbook', 'Why'].map(t => h('th', { scope: 'col' }, t)))),
			h('tbody', residual.map(r => h('tr',
				h('td', r.kind), h('td.mono', r.name),
				h('td', h('code.small', r.sandbox === null || r.sandbox === undefined ? 'absent' : JSON.stringify(r.sandbox))),
				h('td', h('code.small', r.rehearsal === null || r.rehearsal === undefined ? 'absent' : JSON.stringify(r.rehearsal))),
				h('td', r.generator || ''))))));
	if (c.flagged) sec.append(h('p.sub', `${c.flagged} task(s) flagged for review in the playbook (shell tasks or content not inlined).`));
	if (c.skipped && c.skipped.length) sec.append(h('details', h('summary', `${c.skipped.length} change(s) the generator could not express`),
		h('ul', c.skipped.map(s => h('li', h('span.mono', s.path || s.name || JSON.stringify(s)), s.reason ? ` — ${s.reason}` : '')))));
	return sec;
}

function askApproval(c) {
	const sumIn = h('input', { name: 'summary', value: `Apply change ${c.id.slice(0, 12)} of sandbox ${c.sandbox_id}`, maxlength: 500 });
	const btn = h('button.primary', { type: 'submit' }, 'Ask for approval');
	const out = h('p.formstatus', { role: 'status' });
	return h('form.card.ask', {
		onsubmit: ev => {
			ev.preventDefault();
			busy(btn, async () => {
				const r = await post('/v1/approvals', { change_id: c.id, sandbox_id: c.sandbox_id, summary: sumIn.value.trim() });
				toast('Approval requested');
				clear(out, 'Requested: ', h('a', { href: `#/approvals?id=${enc(r.approval.id)}` }, r.approval.id), can('reviewer') ? ' (decide it in Approvals)' : ' (a reviewer decides)');
			});
		},
	}, h('h2', 'Approval'), h('p.sub', 'A reviewer approves or rejects this change; once approved, its playbook can be applied to the production hosts.'),
	field('Summary for the reviewer', sumIn), h('div.formfoot', btn, out));
}

/* ---- The diff ------------------------------------------------------------ */

export function diffView(diff) {
	const d = diff.diff_json || {};
	const files = [
		...(d.files_added || []).map(f => ({ op: 'added', ...f })),
		...(d.files_modified || []).map(f => ({ op: 'modified', ...f })),
		...(d.files_removed || []).map(f => ({ op: 'removed', ...f })),
	].sort((a, b) => a.path.localeCompare(b.path));
	const pk = [
		...(d.packages_added || []).map(p => ['added', p.name, p.version]),
		...(d.packages_upgraded || []).map(p => ['upgraded', p.name, `${p.from} → ${p.to}`]),
		...(d.packages_removed || []).map(p => ['removed', p.name, p.version || '']),
	];
	const users = [
		...(d.users_added || []).map(u => ['user added', u.name, `uid ${u.uid}, ${u.home || ''} ${u.shell || ''}`]),
		...(d.users_removed || []).map(u => ['user removed', u.name, '']),
		...(d.users_modified || []).map(u => ['user modified', u.name, (u.changes || []).join(', ')]),
		...(d.groups_added || []).map(g => ['group added', g.name, `gid ${g.gid}`]),
		...(d.groups_removed || []).map(g => ['group removed', g.name, '']),
		...(d.groups_modified || []).map(g => ['group modified', g.name, (g.changes || []).join(', ')]),
	];
	const cmds = d.commands_run || [];
	const services = d.services_changed || [];
	const counts = h('p.counts', `${files.length} file(s), ${pk.length} package(s), ${services.length} service(s), ${users.length} user/group change(s), ${cmds.length} command(s) · `,
		h('span.mono', `${diff.from_snapshot} → ${diff.to_snapshot}`),
		d.ignored && d.ignored.count ? ` · ${d.ignored.count} path(s) ignored` : '');
	return [
		counts,
		section('Files', files.length, files.map(fileItem), 'No files changed.'),
		section('Packages', pk.length, pk.length ? h('table.data.compact', h('tbody', pk.map(([op, n, v]) => h('tr', h('td', badge(op, op)), h('td.mono', n), h('td.mono', v || ''))))) : null, 'No packages changed.'),
		section('Services', services.length, services.length ? h('table.data.compact', h('tbody', services.map(s => h('tr',
			h('td.mono', s.name), h('td', badge(s.state, s.state)), h('td', s.enabled === true ? 'enabled' : s.enabled === false ? 'disabled' : '—'))))) : null, 'No services changed.'),
		section('Users and groups', users.length, users.length ? h('table.data.compact', h('tbody', users.map(([op, n, x]) => h('tr', h('td', op), h('td.mono', n), h('td', x))))) : null, 'No users or groups changed.'),
		section('Commands run', cmds.length, cmds.length ? h('ol.cmdsrun', cmds.map(c => h('li',
			h('code.cmdline', c.cmd), ' ', badge(`exit ${c.exit_code}`, c.exit_code === 0 ? 'ok' : 'fail'), h('span.sub', ` ${fmtTime(c.at)}`)))) : null,
		'No API commands ran between the two snapshots.'),
	];
}

function section(title, n, content, none) {
	return h('details.dsec', { open: n > 0 },
		h('summary', h('h3', title, ' ', h('span.count', String(n)))),
		n ? content : h('p.sub', none));
}

function fileItem(f) {
	const meta = f.op === 'removed' ? (f.type || '') :
		f.op === 'added' ? `${f.type || ''} ${f.mode || ''} ${f.owner || ''}:${f.group || ''} ${f.type === 'file' ? fmtBytes(f.size) : ''}${f.target ? ` → ${f.target}` : ''}` :
			(f.changes || []).join(', ');
	let detail = null;
	if (f.op === 'modified') {
		const bits = [];
		if (f.diff) bits.push(unifiedDiff(f.diff));
		if (f.diff_truncated) bits.push(h('p.sub', 'The diff was truncated.'));
		for (const k of ['mode', 'owner', 'group', 'target', 'type'])
			if ((f.changes || []).includes(k) && f.old && f.new)
				bits.push(h('p.sub', `${k}: `, h('span.mono', String(f.old[k] ?? '—')), ' → ', h('span.mono', String(f.new[k] ?? '—'))));
		if (f.binary && (f.changes || []).includes('content')) bits.push(h('p.sub', 'Binary content changed.'));
		detail = bits;
	} else if (f.op === 'added' && f.content_b64 && !f.binary) {
		detail = unifiedDiff(b64text(f.content_b64).split('\n').map(l => `+${l}`).join('\n').replace(/\n\+$/, ''));
	}
	return h('details.file', { open: f.op === 'modified' && !!f.diff },
		h('summary', badge(f.op, f.op), ' ', h('span.mono.path', f.path), h('span.sub', ` ${meta}`)),
		detail || h('p.sub', f.op === 'removed' ? 'Removed.' : 'No text content to show.'));
}
