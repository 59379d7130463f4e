/* SPDX-License-Identifier: MIT */
/*
 * benchlib: percentiles and JSON result lines shared by fluid's C
 * benchmarks (see benchlib.h and docs/bench.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchlib.h"

int bench_add(BenchSamples *s, double value)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		double *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = value;
	s->sorted = false;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_percentile(BenchSamples *s, double p)
{
	if (s->n == 0)
		return 0;
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof(*s->v), cmp_double);
		s->sorted = true;
	}
	if (p <= 0)
		return s->v[0];
	if (p >= 100)
		return s->v[s->n - 1];
	/* Nearest rank: the smallest value with at least p% at or below it. */
	size_t rank = (size_t)((p / 100.0) * (double)s->n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return s->v[rank - 1];
}

void bench_samples_free(BenchSamples *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool bench_quick(void)
{
	const char *q = getenv("FLUID_BENCH_QUICK");
	return q && *q && strcmp(q, "0") != 0;
}

size_t bench_iterations(size_t full, size_t quick)
{
	return bench_quick() ? quick : full;
}

/* Names are chosen by benchmark authors; escape anyway so a line always
 * parses. */
static void put_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void bench_report(const char *name, const char *unit, BenchSamples *s,
		  const char *baseline_name, BenchSamples *baseline)
{
	double p50 = bench_percentile(s, 50), p95 = bench_percentile(s, 95);
	printf("{\"name\":");
	put_string(stdout, name);
	printf(",\"unit\":");
	put_string(stdout, unit);
	printf(",\"n\":%zu,\"p50\":%.1f,\"p95\":%.1f", s->n, p50, p95);
	if (baseline_name && baseline) {
		double b50 = bench_percentile(baseline, 50);
		printf(",\"baseline\":{\"name\":");
		put_string(stdout, baseline_name);
		printf(",\"p50\":%.1f}", b50);
		if (p50 > 0)
			printf(",\"ratio\":%.2f", b50 / p50);
	}
	printf("}\n");
	fflush(stdout);
}
