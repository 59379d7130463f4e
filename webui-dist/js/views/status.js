// SPDX-License-Identifier: MIT
// Status: accelerator in use and why, capacity, versions (GET /v1/status),
// and the base images (GET /v1/vms).
import { get } from '../api.js';
import { h, clear, loading, errorBox, badge, fmtDuration, fmtTime } from '../ui.js';

export async function render(main) {
	const box = h('div', loading('Loading status…'));
	main.append(h('div.pagehead', h('h1', 'Status')), box);
	let st, vms;
	try {
		[st, vms] = await Promise.all([get('/v1/status'), get('/v1/vms').catch(e => ({ error: e }))]);
	} catch (e) {
		clear(box, errorBox(e, () => { clear(main); render(main); }));
		return;
	}
	const cap = st.capacity || {}, host = cap.host || {}, eng = st.engine || {};
	const counts = eng.sandboxes || {};
	clear(box,
		h('div.cards',
			card('Accelerator', h('p.big', badge(st.accelerator || '?', st.accelerator === 'kvm' ? 'ok' : 'warn')), h('p.sub', st.accelerator_reason || '')),
			card('Sandboxes', h('p.big', `${cap.sandboxes ?? '—'} / ${cap.max_sandboxes ?? '—'}`),
				h('p.sub', Object.entries(counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k.toLowerCase()}`).join(', ') || 'none running')),
			card('Host', h('p.big', `${host.cpus ?? '—'} CPUs`), h('p.sub', `${host.memory_available_mb ?? '—'} of ${host.memory_mb ?? '—'} MiB memory available`)),
			card('Versions', h('p.big', `fluid ${st.version || '?'}`), h('p.sub', `git ${st.git_rev || '?'} · QEMU ${st.qemu_version || '?'} · kernel ${st.kernel_release || '?'}`))),
		h('section', h('h2', 'Server'),
			h('dl.facts',
				h('div', h('dt', 'Listening'), h('dd.mono', st.listen || '—')),
				h('div', h('dt', 'Up'), h('dd', `${fmtDuration(st.uptime_seconds)} (since ${fmtTime(st.started_at)})`)),
				h('div', h('dt', 'Database'), h('dd', st.database_configured ? 'configured' : 'none (development mode)')),
				h('div', h('dt', 'Defaults'), h('dd', `${cap.default_vcpus ?? '?'} vCPU, ${cap.default_memory_mb ?? '?'} MiB (max ${cap.max_vcpus ?? '?'} vCPU, ${cap.max_memory_mb ?? '?'} MiB)`)),
				h('div', h('dt', 'Warm pool'), h('dd', `${eng.warm_pool ?? 0} ready (size ${eng.pool_size ?? 0})`)),
				h('div', h('dt', 'Standbys'), h('dd', `${eng.standbys ?? 0} ready for restores`)),
				h('div', h('dt', 'cgroups'), h('dd', eng.cgroups || '—')),
				h('div', h('dt', 'State dir'), h('dd.mono', st.state_dir || '—')))),
		h('section', h('h2', 'Images'),
			vms.error ? errorBox(vms.error) : (vms.vms || []).length ?
				h('table.data.compact',
					h('thead', h('tr', ['Image', 'State', 'Memory', 'Kernel', 'Built'].map(t => h('th', { scope: 'col' }, t)))),
					h('tbody', vms.vms.map(v => h('tr',
						h('td.mono', { 'data-label': 'Image' }, v.name, v.default ? h('span.sub', ' default') : ''),
						h('td', { 'data-label': 'State' }, badge(v.state || '?', v.state === 'TEMPLATE_READY' ? 'ok' : 'info')),
						h('td', { 'data-label': 'Memory' }, v.memory_mb ? `${v.memory_mb} MiB` : '—'),
						h('td.mono', { 'data-label': 'Kernel' }, v.kernel || '—'),
						h('td', { 'data-label': 'Built' }, fmtTime(v.built_at)))))) :
				h('p.state.empty', 'No images are built: `image-build/build-images`.')));
}

const card = (title, ...body) => h('div.card.stat', h('h2', title), ...body);
