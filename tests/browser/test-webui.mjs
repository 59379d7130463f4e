// SPDX-License-Identifier: MIT
// End-to-end tests of the web UI against a real `fluid serve` (tests run in
// order and share state through t.shared; see run.mjs).
import { env, signIn, screenshots, api, assert, until, terminalText, LAPTOP, NARROW } from './lib.mjs';

const uniq = () => Math.random().toString(36).slice(2, 8);

export const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('sign in as admin shows the sandboxes screen with the role', async t => {
	const page = await t.page();
	await page.goto(env.url + '/');
	await page.getByLabel('API token').waitFor();
	await screenshots(page, '01-signin');
	await page.getByLabel('API token').fill(env.admin);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await page.getByRole('heading', { name: 'Sandboxes', level: 1 }).waitFor();
	assert((await page.locator('#who .badge.role').innerText()).toLowerCase() === 'admin', 'role badge says admin');
	for (const n of ['Sandboxes', 'Approvals', 'Audit', 'Status'])
		assert(await page.getByRole('link', { name: n, exact: true }).isVisible(), `nav link ${n}`);
	// The token is kept for the tab (sessionStorage): a reload stays signed in.
	await page.reload();
	await page.getByRole('heading', { name: 'Sandboxes', level: 1 }).waitFor();
});

test('create a sandbox from the form; the list updates live (no reload)', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	const agentId = `webui-test-${uniq()}`;
	t.shared.agentId = agentId;
	await page.getByLabel('Base image').selectOption('tiny');
	await page.getByLabel('TTL').selectOption('3600');
	await page.getByLabel('Agent id').fill(agentId);
	await page.getByRole('button', { name: 'Create sandbox' }).click();
	const row = page.locator('table.sandboxes tbody tr', { hasText: agentId });
	await row.waitFor({ timeout: 60000 });
	await until(async () => (await row.locator('.badge').innerText()) === 'RUNNING', 'the new sandbox RUNNING', 60000);
	t.shared.sandbox = await row.getAttribute('data-id');
	assert(t.shared.sandbox, 'row has the sandbox id');
	// One created through the API (as an agent would) appears without a reload.
	const other = await api(env.agent, 'POST', '/v1/sandboxes', { base_image: 'tiny', agent_id: `${agentId}-api` });
	assert(other.status === 201, `API create: ${other.status} ${JSON.stringify(other.body)}`);
	t.shared.apiSandbox = other.body.sandbox.id;
	await page.locator('table.sandboxes tbody tr', { hasText: `${agentId}-api` }).waitFor({ timeout: 15000 });
	await screenshots(page, '02-sandboxes');
});

test('terminal: take over, type a command, see its output', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	await page.goto(`${env.url}/#/sandboxes/${t.shared.sandbox}/terminal`);
	await page.locator('.termscreen[data-connected="watch"]').waitFor({ timeout: 30000 });
	await page.getByRole('button', { name: 'Take over' }).click();
	await page.locator('.termscreen[data-connected="control"]').waitFor({ timeout: 30000 });
	await page.locator('.termscreen').click();
	const word = `typed-${uniq()}`;
	await page.keyboard.type(`echo ${word} | tr a-z A-Z\n`, { delay: 20 });
	await until(async () => (await terminalText(page)).includes(word.toUpperCase()), 'the command output in the terminal', 30000);
	await screenshots(page, '03-terminal-control');
});

test('terminal: keys sent by the agent API appear live in the watched terminal', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	await page.goto(`${env.url}/#/sandboxes/${t.shared.sandbox}/terminal`);
	await page.locator('.termscreen[data-connected="watch"]').waitFor({ timeout: 30000 });
	const word = `agent-${uniq()}`;
	const r = await api(env.agent, 'POST', '/api/v1/tmux/panes/send-keys',
		{ sandbox_id: t.shared.sandbox, keys: `echo ${word} | rev`, enter: true });
	assert(r.status === 200, `send-keys: ${r.status} ${JSON.stringify(r.body)}`);
	const reversed = word.split('').reverse().join('');
	await until(async () => (await terminalText(page)).includes(reversed), 'the agent\'s command and its output in the watched terminal', 30000);
	// Watching is read-only: typing changes nothing in the session.
	await page.locator('.termscreen').click();
	await page.keyboard.type('echo should-not-appear\n');
	await page.waitForTimeout(1500);
	assert(!(await terminalText(page)).includes('should-not-appear'), 'watch mode sends no input');
	await screenshots(page, '04-terminal-watch');
});

test('commands: run one from the UI, history shows output and exit code', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	await page.goto(`${env.url}/#/sandboxes/${t.shared.sandbox}/commands`);
	const pol = page.locator('dl.facts > div', { hasText: 'Policy' });
	await until(async () => /default \(default\)/.test(await pol.innerText()), 'the effective policy is shown');
	const word = `hist-${uniq()}`;
	await page.getByLabel(/Run a command/).fill(`echo ${word}; echo oops >&2; exit 3`);
	await page.getByRole('button', { name: 'Run', exact: true }).click();
	const item = page.locator('details.cmd', { hasText: word }).first();
	await item.waitFor({ timeout: 30000 });
	const code = await item.locator('summary .badge').innerText();
	assert(code === 'exit 3', `exit code 3 shown (got ${JSON.stringify(code)})`);
	await item.locator('summary').click();
	await until(async () => (await item.locator('pre.out').first().innerText()).includes(word), 'stdout shown');
	assert((await item.locator('pre.out.err').innerText()).includes('oops'), 'stderr shown');
	// A command run through the API appears live (event stream).
	const live = `live-${uniq()}`;
	await api(env.agent, 'POST', `/v1/sandboxes/${t.shared.sandbox}/run`, { command: `echo ${live}` });
	await page.locator('details.cmd', { hasText: live }).waitFor({ timeout: 15000 });
	await screenshots(page, '05-commands');
});

test('files: upload, list, download', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	await page.goto(`${env.url}/#/sandboxes/${t.shared.sandbox}/files`);
	await page.locator('table.files').waitFor();
	const name = `upload-${uniq()}.txt`;
	await page.getByLabel('Upload a file into this directory').setInputFiles({ name, mimeType: 'text/plain', buffer: Buffer.from('hello from the browser\n') });
	await page.getByRole('button', { name: 'Upload' }).click();
	await page.locator('table.files tr', { hasText: name }).waitFor({ timeout: 15000 });
	const r = await fetch(`${env.url}/v1/sandboxes/${t.shared.sandbox}/files?path=/root/${name}`, { headers: { Authorization: `Bearer ${env.admin}` } });
	assert(r.status === 200 && (await r.text()) === 'hello from the browser\n', 'the uploaded file is in the guest');
	const [dl] = await Promise.all([
		page.waitForEvent('download'),
		page.getByRole('button', { name: `Download ${name}` }).click(),
	]);
	const stream = await dl.createReadStream();
	let got = '';
	for await (const c of stream) got += c;
	assert(got === 'hello from the browser\n', `downloaded content: ${JSON.stringify(got)}`);
	// Into a directory and back.
	await page.getByRole('button', { name: '..' }).first().click();
	await page.locator('table.files tr', { hasText: 'etc/' }).waitFor();
	await screenshots(page, '06-files');
});

test('snapshots: take one, change the guest, restore it', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	await page.goto(`${env.url}/#/sandboxes/${t.shared.sandbox}/snapshots`);
	await page.getByText('No snapshots yet.').waitFor();
	await page.getByLabel('Snapshot name').fill('clean');
	await page.getByRole('button', { name: 'Take snapshot' }).click();
	await page.locator('.snap[data-snapshot="clean"]').waitFor({ timeout: 30000 });
	const r = await api(env.admin, 'POST', `/v1/sandboxes/${t.shared.sandbox}/run`, { command: 'echo junk > /root/after-snapshot && sync' });
	assert(r.status === 200 && r.body.command.exit_code === 0, 'command after the snapshot');
	await page.getByRole('button', { name: 'Restore clean' }).click();
	await page.getByRole('dialog').getByRole('button', { name: 'Restore' }).click();
	await page.getByText('Restored clean').waitFor({ timeout: 30000 });
	const f = await api(env.admin, 'GET', `/v1/sandboxes/${t.shared.sandbox}/files?path=/root/after-snapshot`);
	assert(f.status === 404, `the file written after the snapshot is gone after the restore (status ${f.status})`);
	// A second snapshot shows as a child of the first in the tree; delete it.
	await page.getByLabel('Snapshot name').fill('scratch');
	await page.getByRole('button', { name: 'Take snapshot' }).click();
	await page.locator('.snaptree ul .snap[data-snapshot="scratch"]').waitFor({ timeout: 30000 });
	await screenshots(page, '07-snapshots');
	await page.getByRole('button', { name: 'Delete scratch' }).click();
	await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
	await page.locator('.snap[data-snapshot="scratch"]').waitFor({ state: 'detached', timeout: 30000 });
	// Branch: a new sandbox from the snapshot, opened on its own screen.
	await page.getByRole('button', { name: 'Branch from clean' }).click();
	await until(async () => !page.url().includes(t.shared.sandbox), 'the branch\'s screen', 60000);
	t.shared.branch = decodeURIComponent(page.url().split('#/sandboxes/')[1].split('/')[0]);
	await page.getByRole('heading', { level: 1 }).waitFor();
	const b = await api(env.admin, 'GET', `/v1/sandboxes/${t.shared.branch}`);
	assert(b.status === 200 && b.body.sandbox.state === 'RUNNING', `the branch runs: ${JSON.stringify(b.body).slice(0, 200)}`);
});

test('change review: a real diff, the playbook and the rehearsal result', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	const r = await api(env.admin, 'POST', `/v1/sandboxes/${t.shared.sandbox}/run`,
		{ command: 'mkdir -p /srv/webui && echo "listen 8080" > /srv/webui/app.conf && echo "# webui test" >> /etc/profile && sync' });
	assert(r.status === 200 && r.body.command.exit_code === 0, 'change made in the guest');
	await page.goto(`${env.url}/#/sandboxes/${t.shared.sandbox}/changes`);
	await page.getByLabel('From snapshot').selectOption('clean');
	await page.getByLabel('To').selectOption('live');
	// The tiny test image has no sshd for ansible: no rehearsal here.
	await page.getByLabel(/rehearse the playbook/).uncheck();
	await page.getByRole('button', { name: 'Review changes' }).click();
	await page.waitForURL(/#\/changes\/chg_/);
	t.shared.change = decodeURIComponent(page.url().split('#/changes/')[1]);
	await page.locator('.diffsec details.file', { hasText: '/srv/webui/app.conf' }).waitFor({ timeout: 90000 });
	const prof = page.locator('.diffsec details.file', { hasText: '/etc/profile' });
	await prof.waitFor();
	assert((await prof.locator('pre.diff .add').allInnerTexts()).some(l => l.includes('# webui test')), 'unified diff of /etc/profile shows the added line');
	await until(async () => !(await page.locator('main .state.loading').count()), 'the change job to finish', 120000, 500);
	await page.locator('pre.yaml').waitFor({ timeout: 30000 });
	assert((await page.locator('pre.yaml').innerText()).includes('/srv/webui/app.conf'), 'playbook YAML has the new file');
	assert(await page.locator('.rehearsal .verdict').count() === 1, 'a rehearsal verdict is shown');
	assert((await page.locator('.cmdsrun').innerText()).includes('/srv/webui/app.conf'), 'commands run are listed');
	await screenshots(page, '08-change-review');
});

test('agent asks for approval; an agent sees no approve button and the API refuses it (403)', async t => {
	const page = await t.page();
	await signIn(page, env.agent);
	assert((await page.locator('#who .badge.role').innerText()).toLowerCase() === 'agent', 'role badge says agent');
	assert(!(await page.getByRole('link', { name: 'Audit', exact: true }).count()), 'no Audit link for an agent');
	await page.goto(`${env.url}/#/changes/${t.shared.change}`);
	const summary = `webui test change ${uniq()}`;
	await page.getByLabel('Summary for the reviewer').fill(summary);
	await page.getByRole('button', { name: 'Ask for approval' }).click();
	await page.getByText('Requested:').waitFor({ timeout: 15000 });
	await page.goto(`${env.url}/#/approvals`);
	const card = page.locator('li.approval', { hasText: summary });
	await card.waitFor({ timeout: 15000 });
	t.shared.approval = await card.getAttribute('data-id');
	t.shared.summary = summary;
	assert(!(await card.getByRole('button', { name: 'Approve' }).count()), 'no Approve button for an agent');
	assert(!(await card.getByRole('button', { name: 'Reject' }).count()), 'no Reject button for an agent');
	const refused = await api(env.agent, 'POST', `/v1/approvals/${t.shared.approval}/approve`, { comment: 'self-approval' });
	assert(refused.status === 403, `agent approve -> ${refused.status}, want 403`);
	await screenshots(page, '09-approvals-agent');
});

test('a reviewer approves with a comment', async t => {
	const page = await t.page();
	await signIn(page, env.reviewer);
	await page.getByRole('link', { name: 'Approvals', exact: true }).click();
	const card = page.locator(`li.approval[data-id="${t.shared.approval}"]`);
	await card.waitFor({ timeout: 15000 });
	await screenshots(page, '10-approvals-pending');
	await card.getByLabel('Comment').fill('looks right: verified diff, one config file');
	await card.getByRole('button', { name: 'Approve' }).click();
	await page.locator('.toast', { hasText: 'Approved' }).waitFor();
	const a = await api(env.reviewer, 'GET', `/v1/approvals/${t.shared.approval}`);
	assert(a.status === 200 && a.body.approval.state === 'approved', `approval state: ${JSON.stringify(a.body)}`);
	assert(a.body.approval.comment === 'looks right: verified diff, one config file', 'comment stored');
	await page.goto(`${env.url}/#/approvals?state=approved`);
	const done = page.locator(`li.approval[data-id="${t.shared.approval}"]`);
	await done.waitFor();
	assert((await done.locator('.badge').first().innerText()) === 'approved', 'shown as approved');
	assert(await done.getByRole('button', { name: 'Apply to production' }).count() === 1, 'a reviewer can apply it');
	await screenshots(page, '11-approvals-approved');
});

test('a reviewer applies the approved change: output streams, an unreachable host ends it failed', async t => {
	const page = await t.page();
	await signIn(page, env.reviewer);
	await page.goto(`${env.url}/#/approvals?state=approved`);
	const card = page.locator(`li.approval[data-id="${t.shared.approval}"]`);
	await card.getByRole('button', { name: 'Apply to production' }).click();
	await page.getByRole('dialog').getByRole('button', { name: 'Apply' }).click();
	const out = card.locator('pre.applyout');
	await until(async () => /== failed \(exit/.test(await out.innerText()), 'the apply\'s final line', 120000, 500);
	assert((await out.innerText()).split('\n').filter(Boolean).length >= 2, 'output lines streamed before the final line');
	const a = await api(env.reviewer, 'GET', `/v1/approvals/${t.shared.approval}`);
	assert(a.body.approval.state === 'failed', `approval state after the apply: ${a.body.approval.state}`);
	await until(async () => (await card.locator('.apphead .badge').innerText()) === 'failed', 'the card to say failed');
	await page.waitForTimeout(6000); // a poll of the list must not take the output away
	assert(/== failed/.test(await out.innerText()), 'the output is still shown');
	await screenshots(page, '12-approvals-apply');
	// The stored result, on the list of all approvals.
	await page.goto(`${env.url}/#/approvals?state=all`);
	await page.locator(`li.approval[data-id="${t.shared.approval}"] details.lastapply`).waitFor();
});

test('audit log with filters and an intact chain (reviewer)', async t => {
	const page = await t.page();
	await signIn(page, env.reviewer);
	await page.getByRole('link', { name: 'Audit', exact: true }).click();
	await page.locator('.verify .verdict.ok').waitFor({ timeout: 20000 });
	await page.getByLabel('Sandbox id').fill(t.shared.sandbox);
	await page.getByLabel('Action').fill('snapshot.create');
	await page.getByRole('button', { name: 'Filter' }).click();
	await until(async () => {
		const rows = await page.locator('table.audit tbody tr').allInnerTexts();
		return rows.length > 0 && rows.every(r => r.includes('snapshot.create'));
	}, 'filtered audit rows');
	await page.getByLabel('Action').fill('');
	await page.getByRole('button', { name: 'Filter' }).click();
	await until(async () => (await page.locator('table.audit tbody tr').count()) > 5, 'unfiltered rows for the sandbox');
	await screenshots(page, '13-audit');
});

test('status screen: accelerator, capacity, versions', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	await page.getByRole('link', { name: 'Status', exact: true }).click();
	await page.locator('.stat', { hasText: 'Accelerator' }).waitFor();
	assert((await page.locator('.stat', { hasText: 'Accelerator' }).innerText()).toLowerCase().includes('tcg'), 'accelerator tcg shown');
	assert((await page.locator('table.data').innerText()).includes('tiny'), 'images listed');
	await screenshots(page, '14-status');
});

test('narrow width: navigation menu and keyboard use', async t => {
	const page = await t.page(NARROW);
	await signIn(page, env.admin);
	const toggle = page.getByRole('button', { name: 'Menu' });
	assert(await toggle.isVisible(), 'menu button at a narrow width');
	assert(!(await page.getByRole('link', { name: 'Status', exact: true }).isVisible()), 'nav hidden until opened');
	await toggle.focus();
	await page.keyboard.press('Enter');
	await page.getByRole('link', { name: 'Status', exact: true }).waitFor({ state: 'visible' });
	await screenshots(page, '15-narrow-menu');
	// Keyboard only: Tab to the Status link and follow it.
	await page.getByRole('link', { name: 'Status', exact: true }).focus();
	await page.keyboard.press('Enter');
	await page.getByRole('heading', { name: 'Status', level: 1 }).waitFor();
	await page.setViewportSize(LAPTOP);
});

test('stop, start and destroy from the list', async t => {
	const page = await t.page();
	await signIn(page, env.admin);
	const row = page.locator(`table.sandboxes tr[data-id="${t.shared.apiSandbox}"]`);
	await row.waitFor();
	await row.getByRole('button', { name: /^Stop / }).click();
	await until(async () => (await row.locator('.badge').innerText()) === 'STOPPED', 'STOPPED', 60000);
	await row.getByRole('button', { name: /^Start / }).click();
	await until(async () => (await row.locator('.badge').innerText()) === 'RUNNING', 'RUNNING again', 60000);
	for (const id of [t.shared.apiSandbox, t.shared.branch, t.shared.sandbox].filter(Boolean)) {
		const r = page.locator(`table.sandboxes tr[data-id="${id}"]`);
		await r.getByRole('button', { name: /^Destroy / }).click();
		await page.getByRole('dialog').getByRole('button', { name: 'Destroy' }).click();
		await r.waitFor({ state: 'detached', timeout: 60000 });
	}
	await page.getByText('No sandboxes yet.').waitFor({ timeout: 15000 });
	await screenshots(page, '16-sandboxes-empty');
});
