/* SPDX-License-Identifier: MIT */
/*
 * benchlib: sample collection, percentiles and the JSON line format that
 * bench/run expects from every benchmark:
 *
 *   {"name":..., "unit":..., "n":..., "p50":..., "p95":...,
 *    "baseline":{"name":..., "p50":...}, "ratio":...}
 *
 * baseline and ratio (baseline p50 / our p50, so > 1 means we are faster)
 * appear only when a benchmark measures its own comparison in the same run.
 */
#ifndef FL_BENCHLIB_H
#define FL_BENCHLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct BenchSamples {
	double *v;
	size_t n, cap;
	bool sorted;
} BenchSamples;

/* Appends one sample. Returns 0 or -ENOMEM. */
int bench_add(BenchSamples *s, double value);
/* Nearest-rank percentile, p in [0, 100]; 0 when there are no samples. */
double bench_percentile(BenchSamples *s, double p);
void bench_samples_free(BenchSamples *s);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* True when bench/run was given --quick (FLUID_BENCH_QUICK=1): run fewer
 * iterations. */
bool bench_quick(void);
/* full, or quick when bench_quick(). */
size_t bench_iterations(size_t full, size_t quick);

/* Prints one result line to stdout (and flushes). baseline may be NULL. */
void bench_report(const char *name, const char *unit, BenchSamples *s,
		  const char *baseline_name, BenchSamples *baseline);

#endif
