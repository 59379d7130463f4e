// SPDX-License-Identifier: MIT
/*
 * image_boot: cold boot of each guest image under TCG with the standard
 * device set, from spawning QEMU to the guest agent answering its hello
 * (agent-ready), in ms. One line per image: image_boot_tiny,
 * image_boot_debian-12. Images must be built (make images).
 */
#include <stdio.h>
#include <stdlib.h>

#include "benchlib.h"
#include "testvm.h"

int main(void)
{
	static const char *const images[] = {"tiny", "debian-12"};
	int rc = 0;
	for (size_t i = 0; i < sizeof(images) / sizeof(images[0]); i++) {
		size_t n = bench_iterations(i == 0 ? 5 : 3, 1);
		BenchSamples s = {0};
		for (size_t k = 0; k < n; k++) {
			TestVm *vm;
			FlError e = {0};
			TestVmOptions o = {.image = images[i]};
			if (testvm_start(&o, &vm, &e) < 0) {
				fprintf(stderr, "image_boot: %s\n", e.msg);
				rc = 1;
				break;
			}
			bench_add(&s, (double)(vm->ready_ms - vm->spawn_ms));
			testvm_destroy(vm);
		}
		if (s.n) {
			char name[64];
			snprintf(name, sizeof(name), "image_boot_%s", images[i]);
			bench_report(name, "ms", &s, NULL, NULL);
		}
		bench_samples_free(&s);
	}
	return rc;
}
