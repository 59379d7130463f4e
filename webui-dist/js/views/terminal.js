// SPDX-License-Identifier: MIT
// The live terminal: xterm.js on the WebSocket
//   GET /v1/sandboxes/{id}/terminal?token=T&mode=watch|control&session=fluid&cols=C&rows=R
// (docs/terminal.md). Server -> client: binary frames of raw terminal bytes,
// and text frames with JSON ({"type":"exit"} when the session ends).
// Client -> server (control mode only): {"type":"input","data"} and
// {"type":"resize","cols","rows"}. Watch mode attaches read-only to the
// sandbox's tmux session, so a human sees what the agent types live;
// "Take over" reconnects in control mode.
import { enc, wsUrl, get } from '../api.js';
import { h, clear } from '../ui.js';

const DEFAULT_SESSION = 'fluid';

export function openTerminal(panel, ctx) {
	const Terminal = window.Terminal;
	const FitAddon = window.FitAddon && window.FitAddon.FitAddon;
	if (!Terminal || !FitAddon) {
		panel.append(h('div.state.error', { role: 'alert' }, 'The terminal component (xterm.js) did not load: run `make` to vendor it into webui-dist/vendor/.'));
		return;
	}
	let mode = 'watch', ws = null, closedByUs = false, session = DEFAULT_SESSION;
	const sessSel = h('select.termsession', h('option', { value: DEFAULT_SESSION }, DEFAULT_SESSION));
	sessSel.addEventListener('change', () => { session = sessSel.value; connect(); });
	// The sandbox's tmux sessions (GET .../tmux/sessions); 'fluid' is the default one.
	get(`/v1/sandboxes/${enc(ctx.id)}/tmux/sessions`).then(r => {
		const names = new Set([DEFAULT_SESSION, ...(r.sessions || []).map(x => x.name)]);
		clear(sessSel, [...names].map(n => h('option', { value: n, selected: n === session }, n)));
	}).catch(() => { /* the default session is always offered */ });
	const status = h('span.termstatus', { role: 'status', 'aria-live': 'polite' }, 'Connecting…');
	const modeLabel = h('span.badge.b-info.termmode');
	const toggle = h('button', { type: 'button' });
	const reconnect = h('button', { type: 'button', hidden: true, onclick: () => connect() }, 'Reconnect');
	// xterm.js goes into an inner box without padding: FitAddon sizes the
	// terminal from its parent's height.
	const inner = h('div.terminner');
	const screen = h('div.termscreen', { 'aria-label': 'Sandbox terminal' }, inner);
	const hint = h('p.sub.termhint');
	panel.append(
		h('h2.visually-hidden', 'Terminal'),
		h('div.termbar', modeLabel, status, h('span.spacer'), h('label.inline', 'session ', sessSel), reconnect, toggle),
		screen, hint);

	const term = new Terminal({
		convertEol: false,
		cursorBlink: true,
		fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
		fontSize: 14,
		scrollback: 5000,
		theme: { background: '#0d1117', foreground: '#e6edf3', cursor: '#58a6ff' },
	});
	// The terminal takes every key, Tab included: F6 leaves it (no keyboard trap).
	term.attachCustomKeyEventHandler(e => {
		if (e.key === 'F6') {
			if (e.type === 'keydown') { e.preventDefault(); toggle.focus(); }
			return false;
		}
		return true;
	});
	const fit = new FitAddon();
	term.loadAddon(fit);
	term.open(inner);
	const doFit = () => { try { fit.fit(); } catch { /* not visible */ } };
	doFit();

	// Input only in control mode; size changes in both (tmux fits the window
	// to the most recently active client, watchers included).
	const send = obj => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj)); };
	const onData = term.onData(data => { if (mode === 'control') send({ type: 'input', data }); });
	const onResize = term.onResize(({ cols, rows }) => send({ type: 'resize', cols, rows }));
	const ro = new ResizeObserver(() => doFit());
	ro.observe(screen);

	function setMode(m) {
		mode = m;
		term.options.disableStdin = m !== 'control';
		modeLabel.textContent = m === 'control' ? 'in control' : 'watching (read-only)';
		modeLabel.className = `badge termmode ${m === 'control' ? 'b-warn' : 'b-info'}`;
		toggle.textContent = m === 'control' ? 'Back to watching' : 'Take over';
		hint.textContent = m === 'control' ?
			'You are typing into the sandbox\'s tmux session (the agent sees it too). Keys (Tab included) go to the terminal while it has focus; F6 moves the focus out of it.' :
			'Read-only view of the sandbox\'s tmux session: keys sent by the agent appear here live. Take over to type.';
	}
	toggle.addEventListener('click', () => {
		setMode(mode === 'control' ? 'watch' : 'control');
		connect();
		if (mode === 'control') term.focus();
	});

	function connect() {
		if (ws) { closedByUs = true; ws.close(); }
		closedByUs = false;
		reconnect.hidden = true;
		status.textContent = 'Connecting…';
		doFit();
		const sock = new WebSocket(wsUrl(`/v1/sandboxes/${enc(ctx.id)}/terminal`,
			{ mode, session, cols: term.cols, rows: term.rows }));
		sock.binaryType = 'arraybuffer';
		ws = sock;
		let opened = false;
		sock.onopen = () => {
			if (ws !== sock) return;
			opened = true;
			term.reset();
			status.textContent = 'attaching…';
		};
		const ready = () => {
			status.textContent = mode === 'control' ? 'connected: you can type' : 'connected (read-only)';
			screen.dataset.connected = mode;
		};
		sock.onmessage = ev => {
			if (ws !== sock) return;
			if (typeof ev.data === 'string') {
				let msg;
				try { msg = JSON.parse(ev.data); } catch { return; }
				if (msg.type === 'ready') {
					ready();
				} else if (msg.type === 'exit') {
					status.textContent = 'the session ended';
					delete screen.dataset.connected;
					reconnect.hidden = false;
				} else if (msg.type === 'error' && msg.error) {
					status.textContent = `error: ${msg.error}`;
				}
				return;
			}
			term.write(new Uint8Array(ev.data));
		};
		sock.onclose = ev => {
			if (ws !== sock || closedByUs) return;
			delete screen.dataset.connected;
			status.textContent = opened ? 'disconnected' : `cannot connect (code ${ev.code})`;
			reconnect.hidden = false;
		};
	}

	setMode('watch');
	connect();
	return () => {
		closedByUs = true;
		if (ws) ws.close();
		ro.disconnect();
		onData.dispose();
		onResize.dispose();
		term.dispose();
		clear(inner);
	};
}
