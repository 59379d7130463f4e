// SPDX-License-Identifier: MIT
/*
 * Unit tests for appliance/accel.c: the KVM/TCG decision with fake effects
 * (no QEMU, no /dev/kvm): overrides, a missing or unusable /dev/kvm, probe
 * success and failure, the cache (hit, key change, corruption) and the
 * probe boot sector's layout. The real probe runs in the integration test.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "accel.h"

typedef struct Fake {
	const char *qemu_version; /* NULL = qemu missing */
	bool kvm_present;
	int kvm_check;            /* 0 or -errno */
	const char *kvm_why;
	int probe_rc;
	bool probe_ok;
	const char *probe_reason;
	int probe_calls;
	const char *last_accel;
	unsigned last_timeout;
} Fake;

static int fake_version(void *ud, char *buf, size_t len, FlError *err)
{
	Fake *f = ud;
	if (!f->qemu_version)
		return fl_error_set(err, -ENOENT, "cannot run qemu-system-x86_64: No such file");
	snprintf(buf, len, "%s", f->qemu_version);
	return 0;
}
static bool fake_present(void *ud) { return ((Fake *)ud)->kvm_present; }
static int fake_check(void *ud, char *why, size_t len)
{
	Fake *f = ud;
	if (f->kvm_check < 0)
		snprintf(why, len, "%s", f->kvm_why);
	return f->kvm_check;
}
static int fake_probe(void *ud, const char *accel, unsigned timeout_ms, FlAccelProbeResult *ret,
		      FlError *err)
{
	Fake *f = ud;
	f->probe_calls++;
	f->last_accel = accel;
	f->last_timeout = timeout_ms;
	if (f->probe_rc < 0)
		return fl_error_set(err, f->probe_rc, "cannot run qemu");
	memset(ret, 0, sizeof(*ret));
	ret->ok = f->probe_ok;
	ret->timed_out = !f->probe_ok;
	snprintf(ret->reason, sizeof(ret->reason), "%s", f->probe_reason);
	return 0;
}

static FlAccelOps ops_for(Fake *f)
{
	return (FlAccelOps){.qemu_version = fake_version,
			    .kvm_present = fake_present,
			    .kvm_check = fake_check,
			    .probe = fake_probe,
			    .ud = f,
			    .kernel_release = "6.1.0-test"};
}

static char dir[64], cache[128];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test-accel-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cache, sizeof(cache), "%s/accel.json", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(cache);
	rmdir(dir);
	return 0;
}

static Fake nested_kvm(void)
{
	return (Fake){.qemu_version = "7.2.22", .kvm_present = true, .kvm_check = 0,
		      .probe_ok = false, .probe_reason = "no guest output within 3000 ms"};
}

static void test_forced_tcg_skips_probe(void **state)
{
	Fake f = nested_kvm();
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_TCG, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(info.kind, FL_ACCEL_TCG);
	assert_string_equal(fl_accel_name(info.kind), "tcg");
	assert_non_null(strstr(info.reason, "forced by configuration"));
	assert_string_equal(info.qemu_version, "7.2.22");
	assert_int_equal(f.probe_calls, 0);
	assert_int_equal(access(cache, F_OK), -1);
}

static void test_forced_kvm(void **state)
{
	Fake f = nested_kvm();
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_KVM, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(info.kind, FL_ACCEL_KVM);
	assert_string_equal(fl_accel_name(info.kind), "kvm");
	assert_int_equal(f.probe_calls, 0);

	f.kvm_check = -ENOENT;
	f.kvm_why = "/dev/kvm is missing";
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_KVM, 3000, cache, &ops, &info, &err),
			 -ENODEV);
	assert_string_equal(err.msg, "accelerator: kvm is configured but /dev/kvm is missing");
}

static void test_auto_without_kvm_device(void **state)
{
	Fake f = nested_kvm();
	f.kvm_present = false;
	f.kvm_check = -ENOENT;
	f.kvm_why = "/dev/kvm is missing";
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(info.kind, FL_ACCEL_TCG);
	assert_string_equal(info.reason, "/dev/kvm is missing");
	assert_false(info.kvm_device);
	assert_int_equal(f.probe_calls, 0);

	f.kvm_present = true;
	f.kvm_check = -EACCES;
	f.kvm_why = "/dev/kvm is not usable: Permission denied";
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(info.kind, FL_ACCEL_TCG);
	assert_string_equal(info.reason, "/dev/kvm is not usable: Permission denied");
}

static void test_auto_probe_fails_then_cached(void **state)
{
	Fake f = nested_kvm();
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(info.kind, FL_ACCEL_TCG);
	assert_string_equal(info.reason, "kvm probe: no guest output within 3000 ms");
	assert_false(info.cached);
	assert_true(info.probed);
	assert_int_equal(f.probe_calls, 1);
	assert_string_equal(f.last_accel, "kvm");
	assert_int_equal(f.last_timeout, 3000);
	assert_int_equal(access(cache, F_OK), 0);

	/* Second start: instant, from the cache, same answer and reason. */
	FlAccelInfo again;
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &again, &err), 0);
	assert_int_equal(f.probe_calls, 1);
	assert_true(again.cached);
	assert_int_equal(again.kind, FL_ACCEL_TCG);
	assert_string_equal(again.reason, info.reason);
	assert_string_equal(again.decided_at, info.decided_at);

	/* A forced mode ignores the cache. */
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_KVM, 3000, cache, &ops, &again, &err), 0);
	assert_int_equal(again.kind, FL_ACCEL_KVM);
}

static void test_cache_key_changes(void **state)
{
	Fake f = nested_kvm();
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(f.probe_calls, 1);

	/* QEMU upgraded and now KVM works: probe again, new answer. */
	f.qemu_version = "8.2.0";
	f.probe_ok = true;
	f.probe_reason = "probe guest finished in 40 ms";
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(f.probe_calls, 2);
	assert_int_equal(info.kind, FL_ACCEL_KVM);
	assert_string_equal(info.reason, "kvm probe: probe guest finished in 40 ms");

	/* New kernel: probe again. */
	ops.kernel_release = "6.2.0-other";
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err), 0);
	assert_int_equal(f.probe_calls, 3);
	/* Different deadline: probe again. */
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 5000, cache, &ops, &info, &err), 0);
	assert_int_equal(f.probe_calls, 4);
	/* Same inputs: cached. */
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 5000, cache, &ops, &info, &err), 0);
	assert_int_equal(f.probe_calls, 4);
	assert_true(info.cached);
	assert_int_equal(info.kind, FL_ACCEL_KVM);
}

static void test_corrupt_cache_reprobes(void **state)
{
	static const char *const junk[] = {
		"", "not json", "[1,2]", "{\"key\":1}",
		"{\"key\":\"probe=1 qemu=7.2.22 kernel=6.1.0-test kvm=1 timeout=3000\","
		"\"accelerator\":\"hvf\",\"reason\":\"x\",\"decided_at\":\"y\"}",
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		Fake f = nested_kvm();
		FlAccelOps ops = ops_for(&f);
		FlAccelInfo info;
		FlError err = {0};
		FILE *fp = fopen(cache, "w");
		assert_non_null(fp);
		fputs(junk[i], fp);
		fclose(fp);
		assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err),
				 0);
		assert_int_equal(f.probe_calls, 1);
		assert_false(info.cached);
		assert_int_equal(info.kind, FL_ACCEL_TCG);
	}
}

static void test_errors(void **state)
{
	Fake f = nested_kvm();
	f.probe_rc = -ENOENT;
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, cache, &ops, &info, &err),
			 -ENOENT);
	assert_string_equal(err.msg, "kvm probe: cannot run qemu");
	assert_int_equal(access(cache, F_OK), -1); /* nothing cached on error */

	f = nested_kvm();
	f.qemu_version = NULL;
	ops = ops_for(&f);
	assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_TCG, 3000, cache, &ops, &info, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "qemu-system-x86_64"));
}

static void test_no_cache_path(void **state)
{
	Fake f = nested_kvm();
	FlAccelOps ops = ops_for(&f);
	FlAccelInfo info;
	FlError err = {0};
	for (int i = 0; i < 2; i++)
		assert_int_equal(fl_accel_decide_with(FL_ACCEL_MODE_AUTO, 3000, NULL, &ops, &info, &err),
				 0);
	assert_int_equal(f.probe_calls, 2);
}

static void test_probe_image(void **state)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/probe.img", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fl_accel_write_probe_image(fd), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, FL_ACCEL_PROBE_IMAGE_SIZE);
	uint8_t s[512];
	assert_int_equal(pread(fd, s, sizeof(s), 0), 512);
	close(fd);
	unlink(path);
	assert_int_equal(s[510], 0x55);
	assert_int_equal(s[511], 0xaa);
	assert_int_equal(s[0], 0xfa); /* cli */
	assert_non_null(memmem(s, sizeof(s), FL_ACCEL_PROBE_MARKER "\r\n", 16));
	/* GDTR points at the GDT inside the sector; the 64-bit code descriptor has L set. */
	uint32_t gdt = s[0xf2] | s[0xf3] << 8 | (uint32_t)s[0xf4] << 16 | (uint32_t)s[0xf5] << 24;
	assert_int_equal(gdt, 0x7c00 + 0xd0);
	assert_int_equal(s[0xf0], 31);
	assert_int_equal(s[0xd0 + 24 + 6], 0xaf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forced_tcg_skips_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forced_kvm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_without_kvm_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_probe_fails_then_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_key_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_cache_reprobes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_cache_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_image, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
