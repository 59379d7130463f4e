// SPDX-License-Identifier: MIT
// fluid web UI: sign-in, navigation and the hash router. Each screen is a
// module under views/ exporting render(main, params, query) which returns an
// optional cleanup function (close WebSockets, stop polling) run when the
// user leaves the screen.
import { session, get, can, whenUnauthorized } from './api.js';
import { h, clear, errorBox, loading, toast, field } from './ui.js';

const routes = [
	[/^\/sandboxes$/, () => import('./views/sandboxes.js')],
	[/^\/sandboxes\/([\w.-]+)(?:\/(\w+))?$/, () => import('./views/sandbox.js')],
	[/^\/changes\/([\w.-]+)$/, () => import('./views/change.js')],
	[/^\/approvals$/, () => import('./views/approvals.js')],
	[/^\/audit$/, () => import('./views/audit.js'), 'reviewer'],
	[/^\/status$/, () => import('./views/status.js')],
];

const NAV = [
	['#/sandboxes', 'Sandboxes', 'agent'],
	['#/approvals', 'Approvals', 'agent'],
	['#/audit', 'Audit', 'reviewer'],
	['#/status', 'Status', 'agent'],
];

const main = document.getElementById('main');
let cleanup = null;
let seq = 0;

function parseHash() {
	const raw = location.hash.replace(/^#/, '') || '/sandboxes';
	const [path, qs] = raw.split('?');
	return { path, query: new URLSearchParams(qs || '') };
}

function renderNav() {
	const nav = document.getElementById('nav');
	const { path } = parseHash();
	clear(nav, h('ul', NAV.filter(([, , role]) => can(role)).map(([href, label]) => {
		const cur = path.startsWith(href.slice(1));
		return h('li', h('a', { href, 'aria-current': cur ? 'page' : null }, label));
	})));
	const w = session.whoami;
	clear(document.getElementById('who'),
		h('span.whoname', { title: w.token_id || '' }, w.name || w.token_id || 'development mode'),
		h(`span.badge.role.b-${w.role}`, w.role),
		h('button.link#signout', { type: 'button', onclick: signOut }, 'Sign out'));
	document.getElementById('topbar').hidden = false;
}

async function route() {
	const my = ++seq;
	if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
	document.body.classList.remove('nav-open');
	document.getElementById('navtoggle').setAttribute('aria-expanded', 'false');
	if (!session.whoami) return;
	renderNav();
	const { path, query } = parseHash();
	for (const [re, load, role] of routes) {
		const m = re.exec(path);
		if (!m) continue;
		if (role && !can(role)) {
			clear(main, errorBox({ status: 403, message: `This screen needs the ${role} role.` }));
			return;
		}
		clear(main, loading());
		try {
			const mod = await load();
			if (my !== seq) return;
			clear(main);
			const c = await mod.render(main, m.slice(1), query);
			if (my !== seq) { if (typeof c === 'function') c(); return; }
			cleanup = typeof c === 'function' ? c : null;
		} catch (e) {
			if (my === seq) clear(main, errorBox(e, route));
		}
		const h1 = main.querySelector('h1');
		if (h1) document.title = `${h1.textContent} · fluid`;
		return;
	}
	clear(main, h('div.state.empty', h('h1', 'Not found'), h('p', 'No such screen. '),
		h('a', { href: '#/sandboxes' }, 'Back to the sandboxes')));
}

function signOut() {
	session.token = '';
	session.whoami = null;
	if (cleanup) { try { cleanup(); } catch { /* ignore */ } cleanup = null; }
	document.getElementById('topbar').hidden = true;
	showSignIn();
}

function showSignIn(message) {
	document.getElementById('topbar').hidden = true;
	document.title = 'Sign in · fluid';
	const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true,
		spellcheck: 'false', placeholder: 'flt_…' });
	const err = h('div.signin-error', { role: 'alert' });
	const btn = h('button.primary', { type: 'submit' }, 'Sign in');
	const form = h('form.signin', {
		onsubmit: async ev => {
			ev.preventDefault();
			const t = input.value.trim();
			if (!t) return;
			btn.disabled = true;
			clear(err);
			session.token = t;
			try {
				session.whoami = await get('/v1/whoami', { noSignout: true });
				if (!location.hash || location.hash === '#/' || location.hash === '#/signin')
					location.hash = '#/sandboxes';
				route();
			} catch (e) {
				session.token = '';
				clear(err, e.status === 401 ? 'That token was not accepted.' : e.message);
				btn.disabled = false;
				input.focus();
			}
		},
	},
	h('h1', h('img', { src: 'favicon.svg', alt: '', width: 32, height: 32 }), ' fluid'),
	h('p.lead', 'Sign in with an API token. After ', h('code', 'make run'), ' the admin token is in ',
		h('code', '.state/admin.token'), '; ', h('code', 'fluid token create --role reviewer'), ' makes more.'),
	field('API token', input),
	err,
	btn);
	if (message) clear(err, message);
	clear(main, h('div.signin-wrap', form));
	input.focus();
}

whenUnauthorized(() => {
	if (!session.whoami) return;
	session.token = '';
	session.whoami = null;
	toast('Your token is no longer accepted: sign in again.', 'error');
	showSignIn('Your token is no longer accepted.');
});

document.getElementById('navtoggle').addEventListener('click', ev => {
	const open = document.body.classList.toggle('nav-open');
	ev.currentTarget.setAttribute('aria-expanded', String(open));
});

window.addEventListener('hashchange', route);

(async function start() {
	if (!session.token) return showSignIn();
	try {
		session.whoami = await get('/v1/whoami', { noSignout: true });
	} catch (e) {
		session.token = '';
		return showSignIn(e.status === 401 ? 'Your token is no longer accepted.' : e.message);
	}
	route();
})();
