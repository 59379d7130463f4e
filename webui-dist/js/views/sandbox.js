// SPDX-License-Identifier: MIT
// Sandbox detail: header (state, image, actions), live events from the
// sandbox's event stream (GET /v1/sandboxes/{id}/stream), and tabs:
// terminal, commands, files, snapshots, changes.
import { get, post, del, api, enc, wsUrl, session } from '../api.js';
import { h, add, clear, loading, empty, errorBox, busy, toast, confirmDialog, field, badge,
	fmtAge, fmtTime, fmtBytes, ttlLeft, fmtDuration } from '../ui.js';
import { openTerminal } from './terminal.js';

const TABS = [
	['terminal', 'Terminal'],
	['commands', 'Commands'],
	['files', 'Files'],
	['snapshots', 'Snapshots'],
	['changes', 'Changes'],
];

export async function render(main, [id, tab]) {
	tab = TABS.some(t => t[0] === tab) ? tab : 'terminal';
	const ctx = { id, sandbox: null, listeners: new Set(), cleanups: [], alive: true };
	let r;
	try {
		r = await get(`/v1/sandboxes/${enc(id)}`);
	} catch (e) {
		main.append(h('h1', 'Sandbox'), errorBox(e), h('p', h('a', { href: '#/sandboxes' }, 'Back to the sandboxes')));
		return;
	}
	ctx.sandbox = r.sandbox;
	const head = h('div.sbhead');
	const renderHead = () => clear(head, header(ctx, renderHead));
	renderHead();

	// The views are plain links (deep-linkable, Tab-reachable); the current one is marked.
	const tabs = h('nav.tabs', { 'aria-label': 'Sandbox views' },
		TABS.map(([k, label]) => h('a.tab', {
			href: `#/sandboxes/${enc(id)}/${k}`, id: `tab-${k}`,
			'aria-current': k === tab ? 'page' : null,
		}, label)));
	const panel = h('section.tabpanel#tabpanel', { 'aria-labelledby': `tab-${tab}` });
	main.append(head, tabs, panel);

	// Live events: state changes re-render the header; tabs subscribe too.
	ctx.on = fn => { ctx.listeners.add(fn); return () => ctx.listeners.delete(fn); };
	if (ctx.sandbox.state !== 'DESTROYED') connectEvents(ctx, ev => {
		if (ev.type === 'state' && ev.data) {
			const was = ctx.sandbox.state;
			Object.assign(ctx.sandbox, pickState(ev.data));
			// Running or not decides what the tabs can do: render the screen anew.
			if ((was === 'RUNNING') !== (ctx.sandbox.state === 'RUNNING')) {
				window.dispatchEvent(new HashChangeEvent('hashchange'));
				return;
			}
			renderHead();
		}
		for (const fn of ctx.listeners) fn(ev);
	});

	const c = await ({ terminal: tabTerminal, commands: tabCommands, files: tabFiles,
		snapshots: tabSnapshots, changes: tabChanges })[tab](panel, ctx);
	if (typeof c === 'function') ctx.cleanups.push(c);
	return () => { ctx.alive = false; ctx.cleanups.forEach(f => { try { f(); } catch { /* ignore */ } }); };
}

function pickState(d) {
	const out = {};
	for (const k of ['state', 'ip_address', 'updated_at', 'head'])
		if (d[k] !== undefined) out[k] = d[k];
	if (d.event === 'destroyed') out.state = 'DESTROYED';
	return out;
}

// The sandbox's event WebSocket, reconnected with a back-off while the
// screen is open.
function connectEvents(ctx, onEvent) {
	let ws = null, retry = null, delay = 1000;
	const open = () => {
		if (!ctx.alive) return;
		ws = new WebSocket(wsUrl(`/v1/sandboxes/${enc(ctx.id)}/stream`));
		ws.onmessage = m => {
			delay = 1000;
			try { onEvent(JSON.parse(m.data)); } catch { /* ignore malformed */ }
		};
		ws.onclose = () => {
			if (!ctx.alive || ctx.sandbox.state === 'DESTROYED') return;
			retry = setTimeout(open, delay);
			delay = Math.min(delay * 2, 15000);
		};
	};
	open();
	ctx.cleanups.push(() => { clearTimeout(retry); if (ws) { ws.onclose = null; ws.close(); } });
}

function header(ctx, rerender) {
	const sb = ctx.sandbox, id = ctx.id;
	const act = [];
	if (sb.state === 'RUNNING')
		act.push(h('button', { type: 'button', onclick: ev => busy(ev.currentTarget, async () => {
			await post(`/v1/sandboxes/${enc(id)}/stop`);
			toast('Sandbox stopped');
			window.dispatchEvent(new HashChangeEvent('hashchange'));
		}) }, 'Stop'));
	if (sb.state === 'STOPPED' || sb.state === 'CREATED')
		act.push(h('button', { type: 'button', onclick: ev => busy(ev.currentTarget, async () => {
			await post(`/v1/sandboxes/${enc(id)}/start`);
			toast('Sandbox started');
			window.dispatchEvent(new HashChangeEvent('hashchange'));
		}) }, 'Start'));
	if (sb.state !== 'DESTROYED')
		act.push(h('button.danger', { type: 'button', onclick: async ev => {
			const btn = ev.currentTarget;
			if (!await confirmDialog('Destroy sandbox?', `${sb.sandbox_name} (${id}) and all its snapshots will be deleted.`, 'Destroy', true)) return;
			busy(btn, async () => {
				await del(`/v1/sandboxes/${enc(id)}`);
				toast('Sandbox destroyed');
				location.hash = '#/sandboxes';
			});
		} }, 'Destroy'));
	return [
		h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: '#/sandboxes' }, 'Sandboxes'), ' / '),
		h('div.pagehead',
			h('h1', sb.sandbox_name || id, ' ', badge(sb.state)),
			h('div.actions', act)),
		h('dl.facts',
			fact('Id', h('span.mono', id)),
			fact('Image', sb.base_image),
			fact('Agent', sb.agent_id || '—'),
			fact('Size', `${sb.cpu || '?'} vCPU · ${sb.memory_mb || '?'} MiB`),
			fact('Network', `${sb.network || '—'}${sb.ip_address ? ` · ${sb.ip_address}` : ''}`),
			fact('Age', h('span', { title: fmtTime(sb.created_at) }, fmtAge(sb.created_at))),
			fact('TTL', sb.state === 'DESTROYED' ? '—' : ttlLeft(sb)),
			fact('Head', sb.head || '—'),
			fact('Policy', sb.policy ? h('span', { title: `assigned by: ${sb.policy.source}` },
				`${sb.policy.name} (${sb.policy.source})`) : '—')),
	];
}

const fact = (k, v) => h('div', h('dt', k), h('dd', v));

/* ---- Terminal ------------------------------------------------------------ */

function tabTerminal(panel, ctx) {
	if (ctx.sandbox.state !== 'RUNNING') {
		panel.append(empty(`The sandbox is ${ctx.sandbox.state}: the terminal needs it running.`));
		return;
	}
	return openTerminal(panel, ctx);
}

/* ---- Commands ------------------------------------------------------------ */

async function tabCommands(panel, ctx) {
	const list = h('div', loading('Loading commands…'));
	const cmd = h('input', { name: 'command', placeholder: 'e.g. uname -a', autocomplete: 'off', required: true });
	const btn = h('button.primary', { type: 'submit' }, 'Run');
	const running = ctx.sandbox.state === 'RUNNING';
	add(panel,
		h('h2.visually-hidden', 'Commands'),
		running ? h('form.inlineform', {
			onsubmit: ev => {
				ev.preventDefault();
				busy(btn, async () => {
					await post(`/v1/sandboxes/${enc(ctx.id)}/run`, { command: cmd.value });
					cmd.value = '';
					await load();
				});
			},
		}, field('Run a command (as root, through the guest agent)', cmd), btn) : null,
		list);
	let timer = null;
	const openIds = new Set(); // expanded entries stay expanded across refreshes
	async function load() {
		try {
			const r = await get(`/v1/sandboxes/${enc(ctx.id)}/commands?limit=200`);
			if (!ctx.alive) return;
			const cmds = (r.commands || []).slice().reverse();
			clear(list, cmds.length ? h('div.cmdlist',
				h('p.sub', `${r.total ?? cmds.length} command(s), newest first.`),
				cmds.map(c => commandItem(c, openIds))) : empty('No commands have run in this sandbox yet.'));
		} catch (e) {
			if (ctx.alive) clear(list, errorBox(e, load));
		}
	}
	await load();
	// command.end events refresh the history (debounced).
	return ctx.on(ev => {
		if (ev.type === 'command.end' || ev.type === 'command.start' || ev.type === 'stream.dropped') {
			clearTimeout(timer);
			timer = setTimeout(load, 300);
		}
	});
}

function commandItem(c, openIds) {
	const code = c.exit_code === null || c.exit_code === undefined ?
		(c.ended_at ? badge(c.signal ? `signal ${c.signal}` : 'error', 'error') : badge('running')) :
		badge(`exit ${c.exit_code}`, c.exit_code === 0 ? 'ok' : 'fail');
	const dur = c.started_at && c.ended_at ? (new Date(c.ended_at) - new Date(c.started_at)) / 1000 : null;
	const d = h('details.cmd', { open: openIds.has(c.id), dataset: { id: c.id } },
		h('summary', h('code.cmdline', c.command), ' ', code,
			h('span.sub', ` ${fmtTime(c.started_at)}${dur !== null ? ` · ${dur < 1 ? `${Math.round(dur * 1000)} ms` : fmtDuration(dur)}` : ''}`)),
		c.stdout ? [h('h3', 'stdout', c.stdout_truncated ? ' (truncated)' : ''), h('pre.out', { tabindex: '0' }, c.stdout)] : null,
		c.stderr ? [h('h3', 'stderr', c.stderr_truncated ? ' (truncated)' : ''), h('pre.out.err', { tabindex: '0' }, c.stderr)] : null,
		!c.stdout && !c.stderr ? h('p.sub', 'No output.') : null,
		c.error ? h('p.error', c.error) : null);
	d.addEventListener('toggle', () => { if (d.open) openIds.add(c.id); else openIds.delete(c.id); });
	return d;
}

/* ---- Files --------------------------------------------------------------- */

function tabFiles(panel, ctx) {
	let cwd = '/root';
	const pathIn = h('input', { name: 'path', value: cwd, autocomplete: 'off', spellcheck: 'false' });
	const crumbs = h('nav.crumbs.pathcrumbs', { 'aria-label': 'Directory' });
	const list = h('div');
	const upIn = h('input', { type: 'file', name: 'upload' });
	const upBtn = h('button', { type: 'submit' }, 'Upload');
	const running = ctx.sandbox.state === 'RUNNING';
	if (!running) {
		panel.append(empty(`The sandbox is ${ctx.sandbox.state}: files need it running.`));
		return;
	}
	add(panel,
		h('h2.visually-hidden', 'Files'),
		h('div.filebar', h('form.inlineform', { onsubmit: ev => { ev.preventDefault(); go(pathIn.value.trim() || '/'); } },
			field('Directory', pathIn), h('button', { type: 'submit' }, 'Open')),
		h('form.inlineform.upload', {
			onsubmit: ev => {
				ev.preventDefault();
				const f = upIn.files[0];
				if (!f) return toast('Choose a file first', 'error');
				const dest = join(cwd, f.name);
				busy(upBtn, async () => {
					await api('PUT', `/v1/sandboxes/${enc(ctx.id)}/files?path=${enc(dest)}`, undefined, { body: f });
					toast(`Uploaded ${dest}`);
					upIn.value = '';
					go(cwd);
				});
			},
		}, field('Upload a file into this directory', upIn), upBtn)),
		crumbs,
		list);

	async function go(p) {
		cwd = normalize(p);
		pathIn.value = cwd;
		const parts = cwd.split('/').filter(Boolean);
		clear(crumbs, h('button.link', { type: 'button', onclick: () => go('/') }, '/'),
			parts.map((seg, i) => [h('button.link', { type: 'button', onclick: () => go('/' + parts.slice(0, i + 1).join('/')) }, seg), i < parts.length - 1 ? '/' : '']));
		clear(list, loading('Listing…'));
		try {
			const r = await get(`/v1/sandboxes/${enc(ctx.id)}/files/list?path=${enc(cwd)}`);
			if (!ctx.alive) return;
			const entries = (r.entries || []).slice().sort((a, b) =>
				(a.kind === 'dir' ? 0 : 1) - (b.kind === 'dir' ? 0 : 1) || a.name.localeCompare(b.name));
			clear(list, h('table.data.files',
				h('thead', h('tr', ['Name', 'Kind', 'Size', 'Mode', 'Modified', ''].map(t => h('th', { scope: 'col' }, t)))),
				h('tbody',
					cwd !== '/' ? h('tr', h('td', { colspan: 6 }, h('button.link', { type: 'button', onclick: () => go(join(cwd, '..')) }, '.. (parent)'))) : null,
					entries.length ? entries.map(e => h('tr',
						h('td', { 'data-label': 'Name' }, e.kind === 'dir' ?
							h('button.link.mono', { type: 'button', onclick: () => go(join(cwd, e.name)) }, e.name + '/') :
							h('span.mono', e.name)),
						h('td', { 'data-label': 'Kind' }, e.kind),
						h('td', { 'data-label': 'Size' }, e.kind === 'dir' ? '—' : fmtBytes(e.size)),
						h('td.mono', { 'data-label': 'Mode' }, (e.mode & 0o7777).toString(8).padStart(4, '0')),
						h('td', { 'data-label': 'Modified' }, fmtTime(e.mtime)),
						h('td', e.kind === 'file' ? h('button', { type: 'button', 'aria-label': `Download ${e.name}`,
							onclick: ev => busy(ev.currentTarget, () => download(ctx.id, join(cwd, e.name), e.name)) }, 'Download') : null)))
						: h('tr', h('td', { colspan: 6 }, empty('This directory is empty.'))))),
			r.truncated ? h('p.sub', 'The listing was truncated.') : null);
		} catch (e) {
			if (ctx.alive) clear(list, errorBox(e, () => go(cwd)));
		}
	}
	go(cwd);
}

function normalize(p) {
	const out = [];
	for (const seg of p.split('/')) {
		if (!seg || seg === '.') continue;
		if (seg === '..') out.pop();
		else out.push(seg);
	}
	return '/' + out.join('/');
}
const join = (a, b) => normalize(`${a}/${b}`);

async function download(id, path, name) {
	const res = await api('GET', `/v1/sandboxes/${enc(id)}/files?path=${enc(path)}`, undefined, { raw: true });
	const blob = await res.blob();
	const url = URL.createObjectURL(blob);
	const a = h('a', { href: url, download: name });
	document.body.append(a);
	a.click();
	a.remove();
	setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/* ---- Snapshots ----------------------------------------------------------- */

async function tabSnapshots(panel, ctx) {
	const list = h('div', loading('Loading snapshots…'));
	const name = h('input', { name: 'snapshot', required: true, pattern: '[A-Za-z0-9._\\-]{1,63}', placeholder: 'e.g. before-upgrade', autocomplete: 'off' });
	const memory = h('input', { type: 'checkbox', name: 'memory' });
	const btn = h('button.primary', { type: 'submit' }, 'Take snapshot');
	const running = ctx.sandbox.state === 'RUNNING';
	add(panel,
		h('h2.visually-hidden', 'Snapshots'),
		running ? h('form.inlineform', {
			onsubmit: ev => {
				ev.preventDefault();
				busy(btn, async () => {
					await post(`/v1/sandboxes/${enc(ctx.id)}/snapshots`, { name: name.value.trim(), memory: memory.checked });
					toast(`Snapshot ${name.value.trim()} taken`);
					name.value = '';
					await load();
				});
			},
		}, field('Snapshot name', name), h('label.inline', memory, ' with RAM (checkpoint)'), btn) : null,
		list);

	async function load() {
		try {
			const r = await get(`/v1/sandboxes/${enc(ctx.id)}/snapshots`);
			if (!ctx.alive) return;
			const snaps = r.snapshots || [];
			clear(list, snaps.length ? tree(snaps, r.head) :
				empty('No snapshots yet.', h('p', 'A snapshot freezes the disk (and RAM with a checkpoint); restore or branch from it later.')));
		} catch (e) {
			if (ctx.alive) clear(list, errorBox(e, load));
		}
	}

	function tree(snaps, head) {
		const byParent = new Map();
		const names = new Set(snaps.map(s => s.name));
		for (const s of snaps) {
			const p = s.parent && names.has(s.parent) ? s.parent : '';
			if (!byParent.has(p)) byParent.set(p, []);
			byParent.get(p).push(s);
		}
		const node = s => h('li',
			h('div.snap', { dataset: { snapshot: s.name } },
				h('span.snapname.mono', s.name),
				s.memory ? badge('checkpoint', 'info') : null,
				s.name === head ? badge('head', 'ok') : null,
				h('span.sub', ` ${fmtTime(s.created_at)}`),
				h('span.actions',
					running ? h('button', { type: 'button', 'aria-label': `Restore ${s.name}`, onclick: async ev => {
						const b = ev.currentTarget;
						if (!await confirmDialog(`Restore ${s.name}?`, 'The sandbox goes back to this snapshot; changes since the last snapshot are lost.', 'Restore', true)) return;
						busy(b, async () => {
							await post(`/v1/sandboxes/${enc(ctx.id)}/snapshots/${enc(s.name)}/restore`, {});
							toast(`Restored ${s.name}`);
							await load();
						});
					} }, 'Restore') : null,
					h('button', { type: 'button', 'aria-label': `Branch from ${s.name}`, onclick: ev => busy(ev.currentTarget, async () => {
						const r = await post('/v1/sandboxes', { from_sandbox: ctx.id, from_snapshot: s.name,
							agent_id: ctx.sandbox.agent_id || 'webui' });
						toast(`Branched ${r.sandbox.sandbox_name} from ${s.name}`);
						location.hash = `#/sandboxes/${enc(r.sandbox.id)}/snapshots`;
					}) }, 'Branch'),
					h('button.danger', { type: 'button', 'aria-label': `Delete ${s.name}`, onclick: async ev => {
						const b = ev.currentTarget;
						if (!await confirmDialog(`Delete snapshot ${s.name}?`, 'The snapshot is removed; the sandbox keeps running.', 'Delete', true)) return;
						busy(b, async () => {
							await del(`/v1/sandboxes/${enc(ctx.id)}/snapshots/${enc(s.name)}`);
							toast(`Deleted ${s.name}`);
							await load();
						});
					} }, 'Delete'))),
			byParent.has(s.name) ? h('ul', byParent.get(s.name).map(node)) : null);
		return h('ul.snaptree', (byParent.get('') || []).map(node));
	}

	await load();
	return ctx.on(ev => {
		if ((ev.type === 'state' && ev.data && /snapshot|restored/.test(ev.data.event || '')) || ev.type === 'stream.dropped') load();
	});
}

/* ---- Changes ------------------------------------------------------------- */

async function tabChanges(panel, ctx) {
	panel.append(h('h2.visually-hidden', 'Changes'));
	const box = h('div', loading('Loading snapshots…'));
	panel.append(box);
	let snaps;
	try {
		snaps = (await get(`/v1/sandboxes/${enc(ctx.id)}/snapshots`)).snapshots || [];
	} catch (e) {
		clear(box, errorBox(e));
		return;
	}
	if (!snaps.length) {
		clear(box, empty('A change review compares two snapshots: take one first (Snapshots tab), let the agent work, then come back.'));
		return;
	}
	const from = h('select', { name: 'from' }, snaps.map(s => h('option', { value: s.name }, s.name)));
	const to = h('select', { name: 'to' },
		ctx.sandbox.state === 'RUNNING' ? h('option', { value: 'live' }, 'live (snapshot now)') : null,
		snaps.slice().reverse().map(s => h('option', { value: s.name }, s.name)));
	const rehearse = h('input', { type: 'checkbox', name: 'rehearse', checked: true });
	const btn = h('button.primary', { type: 'submit' }, 'Review changes');
	clear(box, h('form.card', {
		onsubmit: ev => {
			ev.preventDefault();
			if (from.value === to.value) return toast('Pick two different snapshots', 'error');
			busy(btn, async () => {
				const r = await post(`/v1/sandboxes/${enc(ctx.id)}/changes`,
					{ from_snapshot: from.value, to_snapshot: to.value, rehearse: rehearse.checked });
				location.hash = `#/changes/${enc(r.change.id)}`;
			});
		},
	},
	h('h3', 'Review what changed'),
	h('p.sub', 'The trusted diff between two snapshots (computed by an inspector VM, never by the sandbox), the Ansible playbook generated from it, and its rehearsal on a fresh clone.'),
	h('div.grid', field('From snapshot', from), field('To', to)),
	h('label.inline', rehearse, ' rehearse the playbook on a fresh clone (verifies it)'),
	h('div.formfoot', btn)));
}
