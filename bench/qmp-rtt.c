/* SPDX-License-Identifier: MIT */
/*
 * qmp_rtt: round trip of QMP query-status to a real QEMU over one
 * connected libqmp client, against the baseline qmp_rtt_fresh_connect
 * (connect + greeting + qmp_capabilities + query-status + close each
 * time, which is what a client without persistent connections pays).
 *
 * QEMU: q35, paused (-S), TCG, its QMP listener pre-bound by us (see
 * qmp/testing/qemu-spawn.h). Times in microseconds. Prints two JSON lines
 * (benchlib format): the baseline, then qmp_rtt with baseline and ratio.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "benchlib.h"
#include "qmp.h"
#include "testing/qemu-spawn.h"

static int one_call(QmpClient *c, FlError *err)
{
	return qmp_call_sync(c, "query-status", NULL, -1, 10000, NULL, err);
}

int main(void)
{
	static const char *const extra[] = { "-m", "64", NULL };
	TestQemu q;
	FlError err = { 0 };
	QmpClient *c = NULL;
	BenchSamples rtt = { 0 }, fresh = { 0 };
	int r, rc = 1;

	size_t n_rtt = bench_iterations(2000, 200);
	size_t n_fresh = bench_iterations(200, 30);

	r = test_qemu_start(&q, "q35", extra, &err);
	if (r < 0) {
		fprintf(stderr, "qmp_rtt: %s\n", err.msg);
		return 1;
	}

	r = qmp_connect_sync(q.qmp_path, 30000, &c, &err);
	if (r < 0)
		goto fail;
	for (int i = 0; i < 50; i++) /* warm up */
		if ((r = one_call(c, &err)) < 0)
			goto fail;
	for (size_t i = 0; i < n_rtt; i++) {
		uint64_t t0 = bench_now_ns();
		if ((r = one_call(c, &err)) < 0)
			goto fail;
		bench_add(&rtt, (double)(bench_now_ns() - t0) / 1000.0);
	}
	/* QEMU's monitor serves one client at a time. */
	qmp_client_free(c);
	c = NULL;

	for (size_t i = 0; i < n_fresh; i++) {
		uint64_t t0 = bench_now_ns();
		if ((r = qmp_connect_sync(q.qmp_path, 10000, &c, &err)) < 0)
			goto fail;
		if ((r = one_call(c, &err)) < 0)
			goto fail;
		qmp_client_free(c);
		c = NULL;
		bench_add(&fresh, (double)(bench_now_ns() - t0) / 1000.0);
	}

	bench_report("qmp_rtt_fresh_connect", "us", &fresh, NULL, NULL);
	bench_report("qmp_rtt", "us", &rtt, "qmp_rtt_fresh_connect", &fresh);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "qmp_rtt: %s (%d)\n", err.msg, r);
out:
	qmp_client_free(c);
	test_qemu_stop(&q);
	bench_samples_free(&rtt);
	bench_samples_free(&fresh);
	return rc;
}
