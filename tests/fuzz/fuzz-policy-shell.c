/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the safety policy's shell splitter
 * (appliance/policy.c). The input is a command line (NUL bytes end it, as
 * they would in the JSON API). Whatever the bytes: no crash, no leak,
 * bounded output (at most FL_SHELL_MAX_CMDS commands, each with at least
 * one word), and a decision against a deny policy that is one of the three
 * actions. An unparsable line must never be allowed by a policy with rules.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static FlPolicy *policy;

static void setup(void)
{
	const char *j = "{\"commands\": {\"deny\": [\"rm\", \"dd *of=/dev/*\"],"
			" \"approval\": [\"apt-get *\"]}}";
	struct json_object *o = json_tokener_parse(j);
	if (!o || fl_policy_from_json("fuzz", o, &policy, NULL) < 0)
		abort();
	json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!policy)
		setup();
	if (size > FL_SHELL_MAX_LEN + 16)
		return 0;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;

	FlShellCmds c;
	if (fl_shell_parse(s, &c) == 0) {
		if (c.n > FL_SHELL_MAX_CMDS)
			abort();
		for (size_t i = 0; i < c.n; i++) {
			if (c.v[i].argc < 1 || !c.v[i].argv[0] || c.v[i].argv[c.v[i].argc])
				abort();
			if (c.v[i].depth > FL_SHELL_MAX_DEPTH + 1)
				abort();
		}
		FlPolicyDecision d;
		if (fl_policy_check_command(policy, s, NULL, &d) == 0) {
			if (d.action != FL_POLICY_ALLOW && d.action != FL_POLICY_DENY &&
			    d.action != FL_POLICY_APPROVAL)
				abort();
			if (c.error[0] && d.action == FL_POLICY_ALLOW)
				abort();
		}
		fl_shell_cmds_clear(&c);
	}
	free(s);
	return 0;
}
