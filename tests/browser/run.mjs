// SPDX-License-Identifier: MIT
// Runs fluid's browser tests: node tests/browser/run.mjs [FILE...]
// (default: every tests/browser/test-*.mjs, in name order). Each file
// exports `tests`, an array of {name, fn(t)}; they run in order and share
// t.shared (later tests use what earlier ones made). t.page(viewport?)
// opens a page in a fresh browser context; a test fails when it throws or
// when any of its pages logged a console error or an uncaught exception.
// Prints "ok   - NAME" / "FAIL - NAME: why" per test and closes with
// "N passed, N failed"; exit status 1 on any failure.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { launch, newPage, env, LAPTOP, screenshotCount } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const files = process.argv.slice(2).length ? process.argv.slice(2).map(f => path.resolve(f)) :
	fs.readdirSync(HERE).filter(f => /^test-.*\.mjs$/.test(f)).sort().map(f => path.join(HERE, f));
const only = process.env.FLUID_BROWSER_ONLY ? new RegExp(process.env.FLUID_BROWSER_ONLY) : null;

for (const k of ['url', 'admin', 'reviewer', 'agent'])
	if (!env[k]) { console.log(`FAIL - environment: FLUID_${k === 'url' ? 'URL' : k.toUpperCase() + '_TOKEN'} is not set`); console.log('0 passed, 1 failed'); process.exit(1); }

const browser = await launch();
const shared = {};
let passed = 0, failed = 0;
const perTestMs = Number(process.env.FLUID_BROWSER_TEST_TIMEOUT_MS || 120000);

for (const file of files) {
	const mod = await import(pathToFileURL(file).href);
	for (const { name, fn } of mod.tests || []) {
		if (only && !only.test(name)) continue;
		const pages = [];
		const t = {
			shared,
			page: async (vp = LAPTOP) => { const p = await newPage(browser, vp); pages.push(p); return p; },
			log: (...a) => console.log('#', ...a),
		};
		const start = Date.now();
		let err = null;
		try {
			await Promise.race([
				fn(t),
				new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out after ${perTestMs / 1000} s`)), perTestMs)),
			]);
		} catch (e) {
			err = e;
		}
		// Let late console messages arrive before judging.
		await new Promise(r => setTimeout(r, 200));
		const consoleErrors = pages.flatMap(p => p.fluidErrors);
		if (err || consoleErrors.length) {
			// What the page showed when the test failed, next to the other screenshots.
			const slug = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
			let i = 0;
			for (const p of pages) {
				await p.screenshot({ path: path.join(env.artifacts, `FAIL-${slug}-${i++}.png`), fullPage: true }).catch(() => {});
			}
		}
		for (const p of pages) await p.context().close().catch(() => {});
		const secs = ((Date.now() - start) / 1000).toFixed(1);
		if (!err && consoleErrors.length) err = new Error(`browser console errors: ${consoleErrors.join(' | ')}`);
		if (err) {
			failed++;
			console.log(`FAIL - ${name} (${secs} s): ${err.message}`);
			if (err.stack && process.env.FLUID_BROWSER_VERBOSE) console.log(err.stack);
			if (consoleErrors.length && !err.message.startsWith('browser console')) console.log(`#   console errors: ${consoleErrors.join(' | ')}`);
		} else {
			passed++;
			console.log(`ok   - ${name} (${secs} s)`);
		}
	}
}
await browser.close();
console.log(`# ${screenshotCount()} screenshots in ${env.artifacts}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
