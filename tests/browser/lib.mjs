// SPDX-License-Identifier: MIT
// Helpers for fluid's browser tests: Debian's chromium driven by
// playwright-core (webui/node_modules), a page that records every console
// error and uncaught exception (a test fails on any), sign-in, screenshots
// at laptop and narrow widths, and a plain REST client for set-up and for
// checks the UI must not be trusted with.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const require = createRequire(path.join(ROOT, 'webui/package.json'));
const { chromium } = require('playwright-core');

export const env = {
	url: process.env.FLUID_URL,
	admin: process.env.FLUID_ADMIN_TOKEN,
	reviewer: process.env.FLUID_REVIEWER_TOKEN,
	agent: process.env.FLUID_AGENT_TOKEN,
	artifacts: process.env.FLUID_ARTIFACTS || path.join(ROOT, 'build/test-artifacts/webui'),
	chromium: process.env.FLUID_CHROMIUM || '/usr/bin/chromium',
};

export const LAPTOP = { width: 1280, height: 800 };
export const NARROW = { width: 390, height: 844 };

export async function launch() {
	return chromium.launch({
		executablePath: env.chromium,
		headless: true,
		args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
	});
}

// A new page in its own context (own sessionStorage) that collects console
// errors; page.fluidErrors lists them.
export async function newPage(browser, viewport = LAPTOP) {
	const context = await browser.newContext({ viewport, acceptDownloads: true });
	const page = await context.newPage();
	page.setDefaultTimeout(20000);
	page.fluidErrors = [];
	page.on('console', m => {
		if (m.type() === 'error') page.fluidErrors.push(`console: ${m.text()} (${m.location().url || ''})`);
	});
	page.on('pageerror', e => page.fluidErrors.push(`exception: ${e.message}`));
	return page;
}

export async function signIn(page, token) {
	await page.goto(env.url + '/');
	await page.getByLabel('API token').fill(token);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await page.locator('#who .badge.role').waitFor({ state: 'attached' });
}

let shots = 0;
// Screenshot of the page as it is, at the laptop size and at a narrow width.
export async function screenshots(page, name) {
	fs.mkdirSync(env.artifacts, { recursive: true });
	const vp = page.viewportSize();
	await page.screenshot({ path: path.join(env.artifacts, `${name}-laptop.png`), fullPage: true });
	await page.setViewportSize(NARROW);
	await page.waitForTimeout(300);
	await page.screenshot({ path: path.join(env.artifacts, `${name}-narrow.png`), fullPage: true });
	await page.setViewportSize(vp);
	await page.waitForTimeout(200);
	shots += 2;
}
export const screenshotCount = () => shots;

// REST call from the test itself: {status, body}.
export async function api(token, method, p, body) {
	const headers = { Authorization: `Bearer ${token}` };
	if (body !== undefined) headers['Content-Type'] = 'application/json';
	const res = await fetch(env.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
	const text = await res.text();
	let json = null;
	try { json = text ? JSON.parse(text) : null; } catch { json = text; }
	return { status: res.status, body: json };
}

export function assert(cond, msg) {
	if (!cond) throw new Error(msg);
}

export async function until(fn, what, timeoutMs = 20000, stepMs = 250) {
	const end = Date.now() + timeoutMs;
	let last;
	while (Date.now() < end) {
		try {
			last = await fn();
			if (last) return last;
		} catch (e) { last = e; }
		await new Promise(r => setTimeout(r, stepMs));
	}
	throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

// The text the terminal shows (xterm.js renders rows into the DOM).
export async function terminalText(page) {
	return page.locator('.termscreen .xterm-rows').innerText();
}
