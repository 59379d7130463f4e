// SPDX-License-Identifier: MIT
// Sandboxes: the list (polled every few seconds, so it stays live without a
// reload), the create form, stop/start/destroy.
import { get, post, del, enc } from '../api.js';
import { h, clear, loading, empty, errorBox, busy, toast, confirmDialog, field, badge,
	fmtAge, ttlLeft, fmtTime } from '../ui.js';

const POLL_MS = 3000;
const SIZES = [
	['small', '1 vCPU, 256 MiB', 1, 256],
	['medium', '2 vCPU, 512 MiB', 2, 512],
	['large', '2 vCPU, 1024 MiB', 2, 1024],
];
const TTLS = [['900', '15 minutes'], ['3600', '1 hour'], ['14400', '4 hours'], ['86400', '1 day'], ['0', 'none']];

export async function render(main) {
	let timer = null, alive = true;
	const listBox = h('div.listbox', loading('Loading sandboxes…'));
	const showAll = h('input', { type: 'checkbox', id: 'show-destroyed' });
	const form = createForm(() => refresh());

	main.append(
		h('div.pagehead',
			h('h1', 'Sandboxes'),
			h('label.inline', showAll, ' show destroyed')),
		form,
		h('section', { 'aria-labelledby': 'sbx-list-h' },
			h('h2#sbx-list-h.visually-hidden', 'Sandbox list'),
			listBox));
	showAll.addEventListener('change', () => refresh());

	let lastKey = '';
	async function refresh() {
		clearTimeout(timer);
		try {
			const r = await get('/v1/sandboxes?limit=200');
			if (!alive) return;
			let list = r.sandboxes || [];
			if (!showAll.checked) list = list.filter(s => s.state !== 'DESTROYED');
			list.sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
			// Re-render only when something changed (keeps focus on buttons).
			const key = JSON.stringify(list.map(s => [s.id, s.state, s.updated_at, s.ip_address])) + Math.floor(Date.now() / 10000);
			if (key !== lastKey || listBox.querySelector('.state')) {
				lastKey = key;
				const focused = document.activeElement && document.activeElement.dataset.key;
				clear(listBox, list.length ? table(list, refresh) :
					empty('No sandboxes yet.', h('p', 'Create one with the form above, or from an agent through the API.')));
				if (focused) {
					const again = listBox.querySelector(`[data-key="${CSS.escape(focused)}"]`);
					if (again) again.focus();
				}
			}
		} catch (e) {
			if (!alive) return;
			clear(listBox, errorBox(e, refresh));
		}
		if (alive) timer = setTimeout(refresh, POLL_MS);
	}
	await refresh();
	return () => { alive = false; clearTimeout(timer); };
}

function table(list, refresh) {
	return h('table.data.sandboxes',
		h('thead', h('tr', ['Sandbox', 'State', 'Image', 'Agent', 'Age', 'TTL', 'Actions'].map(t => h('th', { scope: 'col' }, t)))),
		h('tbody', list.map(sb => h('tr', { dataset: { id: sb.id } },
			h('td', { 'data-label': 'Sandbox' },
				h('a.mono', { href: `#/sandboxes/${enc(sb.id)}` }, sb.sandbox_name || sb.id),
				h('div.sub.mono', sb.id)),
			h('td', { 'data-label': 'State' }, badge(sb.state)),
			h('td', { 'data-label': 'Image' }, sb.base_image || '—',
				h('div.sub', [sb.cpu ? `${sb.cpu} vCPU` : null, sb.memory_mb ? `${sb.memory_mb} MiB` : null, sb.network ? `net ${sb.network}` : null].filter(Boolean).join(' · '))),
			h('td', { 'data-label': 'Agent' }, sb.agent_id || '—'),
			h('td', { 'data-label': 'Age', title: fmtTime(sb.created_at) }, fmtAge(sb.created_at)),
			h('td', { 'data-label': 'TTL' }, sb.state === 'DESTROYED' ? '—' : ttlLeft(sb)),
			h('td.actions', { 'data-label': 'Actions' }, actions(sb, refresh))))));
}

function actions(sb, refresh) {
	if (sb.state === 'DESTROYED') return [];
	const out = [h('a.button', { href: `#/sandboxes/${enc(sb.id)}`, dataset: { key: `open-${sb.id}` } }, 'Open')];
	if (sb.state === 'RUNNING')
		out.push(h('button', { type: 'button', dataset: { key: `stop-${sb.id}` }, 'aria-label': `Stop ${sb.sandbox_name}`,
			onclick: ev => busy(ev.currentTarget, async () => {
				await post(`/v1/sandboxes/${enc(sb.id)}/stop`);
				toast(`${sb.sandbox_name} stopped`);
				refresh();
			}) }, 'Stop'));
	if (sb.state === 'STOPPED' || sb.state === 'CREATED')
		out.push(h('button', { type: 'button', dataset: { key: `start-${sb.id}` }, 'aria-label': `Start ${sb.sandbox_name}`,
			onclick: ev => busy(ev.currentTarget, async () => {
				await post(`/v1/sandboxes/${enc(sb.id)}/start`);
				toast(`${sb.sandbox_name} started`);
				refresh();
			}) }, 'Start'));
	out.push(h('button.danger', { type: 'button', dataset: { key: `destroy-${sb.id}` }, 'aria-label': `Destroy ${sb.sandbox_name}`,
		onclick: async ev => {
			const btn = ev.currentTarget;
			if (!await confirmDialog('Destroy sandbox?', `${sb.sandbox_name} (${sb.id}) and all its snapshots will be deleted.`, 'Destroy', true)) return;
			busy(btn, async () => {
				await del(`/v1/sandboxes/${enc(sb.id)}`);
				toast(`${sb.sandbox_name} destroyed`);
				refresh();
			});
		} }, 'Destroy'));
	return out;
}

function createForm(refresh) {
	const image = h('select', { name: 'image' }, h('option', { value: '' }, 'loading images…'));
	const size = h('select', { name: 'size' }, SIZES.map(([v, l]) => h('option', { value: v }, `${v} (${l})`)));
	const ttl = h('select', { name: 'ttl' }, TTLS.map(([v, l]) => h('option', { value: v, selected: v === '3600' }, l)));
	const network = h('select', { name: 'network' },
		h('option', { value: 'nat' }, 'nat (egress allowed)'),
		h('option', { value: 'none' }, 'none (no network)'));
	const agent = h('input', { name: 'agent_id', value: 'webui', required: true, maxlength: 100 });
	const btn = h('button.primary', { type: 'submit' }, 'Create sandbox');
	const status = h('p.formstatus', { role: 'status' });

	get('/v1/vms').then(r => {
		const vms = (r.vms || []);
		clear(image, vms.length ? vms.map(vm => h('option', { value: vm.name, selected: !!vm.default },
			`${vm.name}${vm.default ? ' (default)' : ''}${vm.state && vm.state !== 'TEMPLATE_READY' ? ` — ${vm.state}` : ''}`)) :
			h('option', { value: '' }, 'no images built'));
	}).catch(e => clear(image, h('option', { value: '' }, `images unavailable: ${e.message}`)));

	const form = h('form.card.create', {
		'aria-labelledby': 'create-h',
		onsubmit: ev => {
			ev.preventDefault();
			const [, , cpu, mem] = SIZES.find(s => s[0] === size.value);
			const body = { agent_id: agent.value.trim() || 'webui', cpu, memory_mb: mem,
				ttl_seconds: Number(ttl.value), network: network.value };
			if (image.value) body.base_image = image.value;
			clear(status, 'Creating…');
			busy(btn, async () => {
				try {
					const r = await post('/v1/sandboxes', body);
					clear(status, 'Created ', h('a', { href: `#/sandboxes/${enc(r.sandbox.id)}` }, r.sandbox.sandbox_name), '.');
					toast(`Sandbox ${r.sandbox.sandbox_name} created`);
					refresh();
				} catch (e) {
					clear(status);
					throw e;
				}
			});
		},
	},
	h('h2#create-h', 'New sandbox'),
	h('div.grid',
		field('Base image', image),
		field('Size', size),
		field('TTL', ttl),
		field('Network', network),
		field('Agent id', agent)),
	h('div.formfoot', btn, status));
	return form;
}
