// SPDX-License-Identifier: MIT
/*
 * policy: safety policy parsing, the shell command splitter and the
 * decisions (policy.h has the rules; docs/policies.md the user's view).
 *
 * DESIGN: the shell splitter is a small recursive-descent reader over the
 * POSIX shell grammar's lexical layer. It does not evaluate anything: it
 * reads words (removing quotes, decoding $'...'), notes which words carry
 * expansions, and cuts the line into simple commands at control operators.
 * Every nested command text ($(...), backticks, <(...), ( ... ), sh -c
 * strings, find -exec) is read recursively, with the depth, the number of
 * words and the number of commands capped, so a hostile line costs bounded
 * time and memory. Whatever cannot be known without running the line (a
 * command name that is an expansion, eval, a shell reading a script) is
 * reported as "opaque" and the decision is made conservatively on it.
 * Pure code: no I/O, no globals, no locale.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "policy.h"

const char *fl_policy_action_name(FlPolicyAction a)
{
	switch (a) {
	case FL_POLICY_DENY:
		return "deny";
	case FL_POLICY_APPROVAL:
		return "approval";
	default:
		return "allow";
	}
}

/* ======================================================================
 * Shell splitting
 * ====================================================================== */

enum { WF_QUOTED = 1, WF_EXPANDED = 2, WF_GLOB = 4, WF_ASSIGN = 8 };

typedef struct Word {
	char *s;
	size_t len, cap;
	unsigned flags;
	bool assign_possible; /* unquoted name characters so far */
} Word;

typedef struct Cmd {
	char **argv;
	unsigned char *wf;
	size_t argc, cap;
	bool opaque;
	char reason[96];
	bool words_started; /* a non-assignment word was seen */
} Cmd;

typedef struct Heredoc {
	char *delim;
	bool strip_tabs, expand;
} Heredoc;

typedef struct P {
	const char *s;
	size_t len, i;
	FlShellCmds *out;
	size_t *words; /* shared across nested readers */
	bool failed;   /* syntax error or cap: out->error is set */
	bool nomem;
	Heredoc hd[16];
	size_t n_hd;
} P;

static void p_error(P *p, const char *msg)
{
	if (!p->failed) {
		p->failed = true;
		if (!p->out->error[0])
			snprintf(p->out->error, sizeof(p->out->error), "%s", msg);
	}
}

static void word_put(P *p, Word *w, char c)
{
	if (w->len + 2 > w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 32;
		char *n = realloc(w->s, ncap);
		if (!n) {
			p->nomem = p->failed = true;
			return;
		}
		w->s = n;
		w->cap = ncap;
	}
	w->s[w->len++] = c;
	w->s[w->len] = 0;
}

static void cmd_set_opaque(Cmd *c, const char *why)
{
	if (!c->opaque) {
		c->opaque = true;
		snprintf(c->reason, sizeof(c->reason), "%s", why);
	}
}

static void cmd_clear(Cmd *c)
{
	for (size_t i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	free(c->wf);
	memset(c, 0, sizeof(*c));
}

static void cmd_push(P *p, Cmd *c, Word *w)
{
	if (++*p->words > FL_SHELL_MAX_WORDS) {
		p_error(p, "too many words");
		p->out->truncated = true;
		return;
	}
	if (c->argc + 2 > c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 8;
		char **na = realloc(c->argv, ncap * sizeof(*na));
		if (na)
			c->argv = na;
		unsigned char *nf = realloc(c->wf, ncap);
		if (nf)
			c->wf = nf;
		if (!na || !nf) {
			p->nomem = p->failed = true;
			return;
		}
		c->cap = ncap;
	}
	c->argv[c->argc] = w->s ? w->s : strdup("");
	if (!c->argv[c->argc]) {
		p->nomem = p->failed = true;
		return;
	}
	c->wf[c->argc] = (unsigned char)w->flags;
	c->argc++;
	c->argv[c->argc] = NULL;
	w->s = NULL;
	w->len = w->cap = 0;
}

static void parse_list(P *p, unsigned depth, bool until_paren, Cmd *outer);
static void resolve(P *p, char **argv, const unsigned char *wf, size_t argc, bool opaque,
		    const char *reason, bool dynamic, unsigned depth, unsigned wrap);

/* Parses a separate command text (backticks, sh -c strings) at depth. */
static void parse_string(P *parent, const char *s, size_t len, unsigned depth)
{
	if (parent->failed)
		return;
	if (depth > FL_SHELL_MAX_DEPTH) {
		p_error(parent, "nesting too deep");
		parent->out->truncated = true;
		return;
	}
	P sub = {.s = s, .len = len, .out = parent->out, .words = parent->words};
	parse_list(&sub, depth, false, NULL);
	for (size_t i = 0; i < sub.n_hd; i++)
		free(sub.hd[i].delim);
	if (sub.failed) {
		parent->failed = true;
		parent->nomem |= sub.nomem;
	}
}

static bool is_name_char(char c, bool first)
{
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (!first && c >= '0' && c <= '9');
}

/* Skips a balanced construct starting after its opener; returns the index
 * after the closer or len. Notes command substitutions inside. */
static size_t skip_balanced(const char *s, size_t len, size_t i, char open, char close,
			    bool *has_subst)
{
	int level = 1;
	while (i < len && level > 0) {
		char c = s[i];
		if (c == '\\' && i + 1 < len) {
			i += 2;
			continue;
		}
		if (c == '\'') {
			const char *q = memchr(s + i + 1, '\'', len - i - 1);
			i = q ? (size_t)(q - s) + 1 : len;
			continue;
		}
		if (c == '`' || (c == '$' && i + 1 < len && s[i + 1] == '('))
			*has_subst = true;
		if (c == open)
			level++;
		else if (c == close)
			level--;
		i++;
	}
	return i;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* $'...' with its backslash escapes decoded. p->i is after the quote. */
static void read_ansi_c(P *p, Word *w)
{
	while (p->i < p->len && p->s[p->i] != '\'') {
		char c = p->s[p->i++];
		if (c != '\\' || p->i >= p->len) {
			word_put(p, w, c);
			continue;
		}
		char e = p->s[p->i++];
		int v;
		switch (e) {
		case 'n':
			word_put(p, w, '\n');
			break;
		case 't':
			word_put(p, w, '\t');
			break;
		case 'r':
			word_put(p, w, '\r');
			break;
		case 'a':
			word_put(p, w, '\a');
			break;
		case 'b':
			word_put(p, w, '\b');
			break;
		case 'f':
			word_put(p, w, '\f');
			break;
		case 'v':
			word_put(p, w, '\v');
			break;
		case 'e':
		case 'E':
			word_put(p, w, 27);
			break;
		case 'x':
			v = 0;
			for (int k = 0; k < 2 && p->i < p->len && hexval(p->s[p->i]) >= 0; k++)
				v = v * 16 + hexval(p->s[p->i++]);
			word_put(p, w, (char)v);
			break;
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
			v = e - '0';
			for (int k = 0;
			     k < 2 && p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '7'; k++)
				v = v * 8 + (p->s[p->i++] - '0');
			word_put(p, w, (char)v);
			break;
		case 'u':
		case 'U':
		case 'c':
			/* unicode and control escapes: too rich to decode here */
			w->flags |= WF_EXPANDED;
			break;
		default:
			word_put(p, w, e); /* \\ \' \" \? and unknown: the character */
		}
	}
	if (p->i >= p->len)
		p_error(p, "unterminated $'");
	else
		p->i++;
}

/* A backquoted command: p->i is after the opening quote. */
static void read_backtick(P *p, Word *w, bool in_dq, unsigned depth)
{
	Word inner = {0};
	while (p->i < p->len && p->s[p->i] != '`') {
		char c = p->s[p->i++];
		if (c == '\\' && p->i < p->len &&
		    (p->s[p->i] == '$' || p->s[p->i] == '`' || p->s[p->i] == '\\' ||
		     (in_dq && p->s[p->i] == '"'))) {
			c = p->s[p->i++];
		}
		word_put(p, &inner, c);
	}
	if (p->i >= p->len) {
		p_error(p, "unterminated `");
	} else {
		p->i++;
		parse_string(p, inner.s ? inner.s : "", inner.len, depth + 1);
	}
	free(inner.s);
	w->flags |= WF_EXPANDED;
}

/* After '$' (p->i points past it). */
static void read_dollar(P *p, Word *w, Cmd *c, bool in_dq, unsigned depth)
{
	if (p->i >= p->len) {
		word_put(p, w, '$');
		return;
	}
	char n = p->s[p->i];
	if (n == '(' && p->i + 1 < p->len && p->s[p->i + 1] == '(') {
		bool subst = false;
		p->i = skip_balanced(p->s, p->len, p->i + 1, '(', ')', &subst);
		if (p->i < p->len && p->s[p->i] == ')')
			p->i++;
		else
			p_error(p, "unterminated $((");
		if (subst)
			cmd_set_opaque(c, "command substitution inside an arithmetic expansion");
		w->flags |= WF_EXPANDED;
		return;
	}
	if (n == '(') {
		p->i++;
		if (depth + 1 > FL_SHELL_MAX_DEPTH) {
			p_error(p, "nesting too deep");
			p->out->truncated = true;
			return;
		}
		parse_list(p, depth + 1, true, NULL);
		w->flags |= WF_EXPANDED;
		return;
	}
	if (n == '{') {
		bool subst = false;
		p->i = skip_balanced(p->s, p->len, p->i + 1, '{', '}', &subst);
		if (subst)
			cmd_set_opaque(c, "command substitution inside a parameter expansion");
		w->flags |= WF_EXPANDED;
		return;
	}
	if (n == '\'' && !in_dq) {
		p->i++;
		read_ansi_c(p, w);
		w->flags |= WF_QUOTED;
		return;
	}
	if (n == '"' && !in_dq)
		return; /* $"..." is "..." */
	if (is_name_char(n, true)) {
		while (p->i < p->len && is_name_char(p->s[p->i], false))
			p->i++;
		w->flags |= WF_EXPANDED;
		return;
	}
	if (isdigit((unsigned char)n) || strchr("@*#?$!-", n)) {
		p->i++;
		w->flags |= WF_EXPANDED;
		return;
	}
	word_put(p, w, '$');
}

static bool is_meta(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' || c == '|' || c == '<' ||
	       c == '>' || c == '(' || c == ')';
}

/* Reads one word at p->i (not at a metacharacter). */
static void read_word(P *p, Word *w, Cmd *c, unsigned depth)
{
	w->assign_possible = true;
	while (p->i < p->len && !p->failed) {
		char ch = p->s[p->i];
		if (is_meta(ch))
			break;
		p->i++;
		if (ch == '\\') {
			if (p->i >= p->len)
				break;
			if (p->s[p->i] == '\n') {
				p->i++;
				continue;
			}
			word_put(p, w, p->s[p->i++]);
			w->flags |= WF_QUOTED;
			w->assign_possible = false;
		} else if (ch == '\'') {
			const char *q = memchr(p->s + p->i, '\'', p->len - p->i);
			if (!q) {
				p_error(p, "unterminated '");
				return;
			}
			for (; p->s + p->i < q; p->i++)
				word_put(p, w, p->s[p->i]);
			p->i++;
			w->flags |= WF_QUOTED;
			w->assign_possible = false;
		} else if (ch == '"') {
			w->flags |= WF_QUOTED;
			w->assign_possible = false;
			for (;;) {
				if (p->i >= p->len) {
					p_error(p, "unterminated \"");
					return;
				}
				char d = p->s[p->i++];
				if (d == '"')
					break;
				if (d == '\\' && p->i < p->len && strchr("$`\"\\\n", p->s[p->i])) {
					if (p->s[p->i] != '\n')
						word_put(p, w, p->s[p->i]);
					p->i++;
				} else if (d == '$') {
					read_dollar(p, w, c, true, depth);
				} else if (d == '`') {
					read_backtick(p, w, true, depth);
				} else {
					word_put(p, w, d);
				}
				if (p->failed)
					return;
			}
		} else if (ch == '$') {
			w->assign_possible = false;
			read_dollar(p, w, c, false, depth);
		} else if (ch == '`') {
			w->assign_possible = false;
			read_backtick(p, w, false, depth);
		} else {
			if (ch == '=' && w->assign_possible && w->len > 0 &&
			    !(w->flags & WF_ASSIGN))
				w->flags |= WF_ASSIGN;
			else if (!(w->flags & WF_ASSIGN) && !is_name_char(ch, w->len == 0) &&
				 !(ch == '+' && p->i < p->len && p->s[p->i] == '='))
				w->assign_possible = false;
			/* globs, and bash's brace expansion ({rm,x} runs "rm x") */
			if (ch == '*' || ch == '?' || ch == '[' || ch == '{')
				w->flags |= WF_GLOB;
			word_put(p, w, ch);
		}
	}
}

static void emit(P *p, char **argv, size_t argc, bool opaque, const char *reason, bool dynamic,
		 unsigned depth)
{
	FlShellCmds *o = p->out;
	if (o->n >= FL_SHELL_MAX_CMDS) {
		p_error(p, "too many commands");
		o->truncated = true;
		return;
	}
	FlShellCmd *nv = realloc(o->v, (o->n + 1) * sizeof(*nv));
	if (!nv) {
		p->nomem = p->failed = true;
		return;
	}
	o->v = nv;
	FlShellCmd *c = &o->v[o->n];
	memset(c, 0, sizeof(*c));
	c->argv = calloc(argc + 1, sizeof(char *));
	if (!c->argv) {
		p->nomem = p->failed = true;
		return;
	}
	o->n++;
	for (size_t i = 0; i < argc; i++) {
		c->argv[i] = strdup(argv[i]);
		if (!c->argv[i]) {
			p->nomem = p->failed = true;
			return;
		}
		c->argc++;
	}
	c->opaque = opaque;
	c->dynamic_args = dynamic;
	c->depth = depth;
	if (reason)
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static const char *base_name(const char *s)
{
	const char *b = strrchr(s, '/');
	return b && b[1] ? b + 1 : s;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

typedef struct Wrapper {
	const char *name;
	const char *optarg;  /* short options that take an argument */
	unsigned positional; /* operands before the wrapped command */
	bool assignments;    /* NAME=VALUE operands are skipped (env) */
	bool dynamic;	     /* more arguments come at run time (xargs) */
} Wrapper;

static const Wrapper wrappers[] = {
	{"env", "uCS", 0, true, false},		 {"sudo", "ugCDhprtTUR", 0, true, false},
	{"doas", "uC", 0, false, false},	 {"nice", "n", 0, false, false},
	{"ionice", "cnp", 0, false, false},	 {"nohup", "", 0, false, false},
	{"setsid", "", 0, false, false},	 {"time", "fo", 0, false, false},
	{"exec", "a", 0, false, false},		 {"command", "", 0, false, false},
	{"builtin", "", 0, false, false},	 {"timeout", "sk", 1, false, false},
	{"stdbuf", "ioe", 0, false, false},	 {"taskset", "", 1, false, false},
	{"chrt", "", 1, false, false},		 {"chroot", "", 1, false, false},
	{"xargs", "adEILnPs", 0, false, true},	 {"busybox", "", 0, false, false},
	{"flock", "wE", 1, false, false},	 {"strace", "eopsuEabIOPSX", 0, false, false},
	{"ltrace", "eopsuEnS", 0, false, false}, {"unshare", "SGRw", 0, false, false},
	{"nsenter", "tSGrw", 0, false, false},	 {"runuser", "ugG", 0, false, false},
	{"catchsegv", "", 0, false, false},	 {"fakeroot", "", 0, false, false},
	{"eatmydata", "", 0, false, false},	 {"faketime", "", 1, false, false},
	{"proxychains", "f", 0, false, false},	 {"torsocks", "", 0, false, false},
};

static const char *const shells[] = {"sh",   "bash",  "dash", "zsh",  "ksh", "ash",  "mksh",
				     "posh", "rbash", "yash", "fish", "csh", "tcsh", NULL};
static const char *const opaque_builtins[] = {"eval", "source", ".",	  "trap", "alias",
					      "fc",   "enable", "coproc", NULL};

/* sh [options] -c STRING ...: parse STRING, or report what runs instead. */
static void resolve_shell(P *p, char **argv, const unsigned char *wf, size_t argc, unsigned depth)
{
	bool has_c = false;
	size_t i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--") || !strcmp(a, "-")) {
			i++;
			break;
		}
		if ((a[0] != '-' && a[0] != '+') || !a[1])
			break;
		if (a[0] == '-' && a[1] == '-') {
			if (!strcmp(a, "--rcfile") || !strcmp(a, "--init-file"))
				i++;
			continue;
		}
		if (strchr(a, 'c') && a[0] == '-')
			has_c = true;
		if (strchr(a + 1, 'o') || strchr(a + 1, 'O'))
			i++;
	}
	if (!has_c) {
		emit(p, argv, argc, true,
		     i < argc ? "a shell running a script file"
			      : "a shell reading commands from stdin",
		     false, depth);
		return;
	}
	emit(p, argv, argc, false, NULL, false, depth);
	if (i >= argc)
		return; /* "sh -c" without a string fails */
	if (wf && (wf[i] & (WF_EXPANDED | WF_GLOB))) {
		emit(p, argv + i, 1, true, "sh -c with a string built at run time", false,
		     depth + 1);
		return;
	}
	parse_string(p, argv[i], strlen(argv[i]), depth + 1);
}

/* find ... -exec CMD ... ; : the CMDs are commands too. */
static void resolve_find(P *p, char **argv, const unsigned char *wf, size_t argc, unsigned depth,
			 unsigned wrap)
{
	for (size_t i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-exec") && strcmp(argv[i], "-execdir") &&
		    strcmp(argv[i], "-ok") && strcmp(argv[i], "-okdir"))
			continue;
		size_t j = i + 1;
		bool dyn = false;
		while (j < argc && strcmp(argv[j], ";") && strcmp(argv[j], "+")) {
			if (strstr(argv[j], "{}"))
				dyn = true;
			j++;
		}
		resolve(p, argv + i + 1, wf ? wf + i + 1 : NULL, j - i - 1, false, NULL, dyn, depth,
			wrap + 1);
		i = j;
	}
}

/*
 * A simple command's words: emits it and whatever it runs in turn.
 * wf may be NULL (argv given directly: every word literal).
 */
static void resolve(P *p, char **argv, const unsigned char *wf, size_t argc, bool opaque,
		    const char *reason, bool dynamic, unsigned depth, unsigned wrap)
{
	static const char *const skip_words[] = {"if",	  "then",  "else", "elif", "do",
						 "while", "until", "!",	   "{",	   "}",
						 "fi",	  "done",  "esac", "[[",   NULL};
	while (argc && (!wf || !(wf[0] & WF_QUOTED)) && in_list(argv[0], skip_words)) {
		argv++, argc--;
		if (wf)
			wf++;
	}
	if (!argc || p->failed)
		return;
	if (wrap > 16) {
		emit(p, argv, argc, true, "wrappers nested too deep", dynamic, depth);
		return;
	}
	const char *name = argv[0];
	const char *base = base_name(name);
	if (!wf || !(wf[0] & WF_QUOTED)) {
		if (!strcmp(name, "for") || !strcmp(name, "select") || !strcmp(name, "function"))
			return; /* "for x in a b" heads a loop; its body follows as commands */
		if (!strcmp(name, "case")) {
			emit(p, argv, argc, true, "case statements are not analysed", false, depth);
			return;
		}
	}
	if (opaque) {
		emit(p, argv, argc, true, reason, dynamic, depth);
		return;
	}
	if (wf && (wf[0] & WF_EXPANDED)) {
		emit(p, argv, argc, true, "the command name is an expansion", dynamic, depth);
		return;
	}
	if (wf && (wf[0] & WF_GLOB)) {
		emit(p, argv, argc, true, "the command name is a glob", dynamic, depth);
		return;
	}
	if (in_list(base, opaque_builtins)) {
		emit(p, argv, argc, true, "runs code the parser cannot see", dynamic, depth);
		return;
	}
	if (in_list(base, shells)) {
		resolve_shell(p, argv, wf, argc, depth);
		return;
	}
	if (!strcmp(base, "su") || !strcmp(base, "watch")) {
		emit(p, argv, argc, false, NULL, dynamic, depth);
		bool is_watch = !strcmp(base, "watch");
		for (size_t i = 1; i < argc; i++) {
			const char *s = NULL;
			if (!is_watch &&
			    (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--command")) &&
			    i + 1 < argc)
				s = argv[++i];
			else if (!is_watch && !strncmp(argv[i], "--command=", 10))
				s = argv[i] + 10;
			if (s) {
				if (wf && (wf[i] & WF_EXPANDED))
					emit(p, argv + i, 1, true,
					     "su -c with a string built at run time", false,
					     depth + 1);
				else
					parse_string(p, s, strlen(s), depth + 1);
				return;
			}
			if (is_watch && argv[i][0] != '-') {
				/* watch joins its operands and runs them with sh -c */
				size_t total = 1;
				for (size_t k = i; k < argc; k++)
					total += strlen(argv[k]) + 1;
				_cleanup_free_ char *joined = calloc(total, 1);
				if (!joined) {
					p->nomem = p->failed = true;
					return;
				}
				for (size_t k = i; k < argc; k++) {
					if (k > i)
						strcat(joined, " ");
					strcat(joined, argv[k]);
				}
				parse_string(p, joined, strlen(joined), depth + 1);
				return;
			}
			if (is_watch && (!strcmp(argv[i], "-n") || !strcmp(argv[i], "-d")))
				i += !strcmp(argv[i], "-n");
		}
		if (!is_watch)
			emit(p, argv, argc, true, "su without -c starts a shell", false, depth);
		return;
	}
	/* an argument that is an expansion or a glob can be anything at run time */
	bool dyn_args = dynamic;
	for (size_t i = 1; wf && i < argc; i++)
		if (wf[i] & (WF_EXPANDED | WF_GLOB))
			dyn_args = true;
	emit(p, argv, argc, false, NULL, dyn_args, depth);
	if (!strcmp(base, "find")) {
		resolve_find(p, argv, wf, argc, depth, wrap);
		return;
	}
	const Wrapper *w = NULL;
	for (size_t k = 0; k < FL_ARRAY_SIZE(wrappers); k++)
		if (!strcmp(base, wrappers[k].name))
			w = &wrappers[k];
	if (!w)
		return;
	size_t i = 1;
	unsigned positional = w->positional;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-") && !strcmp(base, "env"))
			continue; /* "env -" is env -i */
		if (a[0] == '-' && a[1]) {
			if (!strcmp(base, "command") && (strchr(a, 'v') || strchr(a, 'V')))
				return; /* command -v only looks the name up */
			if (!strcmp(base, "env") &&
			    (!strcmp(a, "-S") || !strncmp(a, "--split-string", 14))) {
				emit(p, argv, argc, true, "env -S splits a string into a command",
				     false, depth);
				return;
			}
			if ((!strcmp(base, "sudo") && (!strcmp(a, "-s") || !strcmp(a, "-i")) &&
			     i + 1 >= argc)) {
				emit(p, argv, argc, true, "sudo starts a shell", false, depth);
				return;
			}
			if (a[1] == '-')
				continue; /* long option; --opt=value form */
			for (const char *o = a + 1; *o; o++)
				if (strchr(w->optarg, *o)) {
					if (!o[1])
						i++; /* the value is the next word */
					break;
				}
			continue;
		}
		if (w->assignments && strchr(a, '=') && is_name_char(a[0], true))
			continue;
		if (positional) {
			positional--;
			continue;
		}
		break;
	}
	if (i >= argc) {
		if (w->dynamic) {
			char *echo[] = {"echo", NULL};
			emit(p, echo, 1, false, NULL, true, depth);
		}
		return;
	}
	resolve(p, argv + i, wf ? wf + i : NULL, argc - i, false, NULL, dynamic || w->dynamic,
		depth, wrap + 1);
}

static void finish_cmd(P *p, Cmd *c, unsigned depth)
{
	if (!p->failed && (c->argc || c->opaque)) {
		if (!c->argc) {
			char *none[] = {"", NULL};
			emit(p, none, 1, true, c->reason, false, depth);
		} else {
			resolve(p, c->argv, c->wf, c->argc, c->opaque, c->reason, false, depth, 0);
		}
	}
	cmd_clear(c);
}

/* At a newline: the bodies of pending here-documents follow. */
static void read_heredocs(P *p, Cmd *c, unsigned depth)
{
	for (size_t k = 0; k < p->n_hd && !p->failed; k++) {
		Heredoc *h = &p->hd[k];
		size_t dl = strlen(h->delim);
		bool subst = false;
		while (p->i < p->len) {
			size_t start = p->i;
			const char *nl = memchr(p->s + start, '\n', p->len - start);
			size_t end = nl ? (size_t)(nl - p->s) : p->len;
			p->i = nl ? end + 1 : p->len;
			size_t ls = start;
			if (h->strip_tabs)
				while (ls < end && p->s[ls] == '\t')
					ls++;
			if (end - ls == dl && !memcmp(p->s + ls, h->delim, dl))
				break;
			if (h->expand)
				for (size_t j = start; j < end; j++)
					if (p->s[j] == '`' ||
					    (p->s[j] == '$' && j + 1 < end && p->s[j + 1] == '('))
						subst = true;
		}
		if (subst) {
			char *hd[] = {"<<", NULL};
			emit(p, hd, 1, true, "command substitution in a here-document", false,
			     depth);
		}
		free(h->delim);
	}
	p->n_hd = 0;
	(void)c;
}

/* A redirection operator at p->i; reads its target word. */
static void read_redirect(P *p, Cmd *c, unsigned depth)
{
	const char *s = p->s + p->i;
	size_t left = p->len - p->i;
	bool heredoc = false, strip = false;
	if (left >= 3 && !memcmp(s, "<<<", 3)) {
		p->i += 3;
	} else if (left >= 3 && !memcmp(s, "<<-", 3)) {
		p->i += 3, heredoc = strip = true;
	} else if (left >= 2 && !memcmp(s, "<<", 2)) {
		p->i += 2, heredoc = true;
	} else if (left >= 3 && !memcmp(s, "&>>", 3)) {
		p->i += 3;
	} else if (left >= 2 &&
		   (!memcmp(s, ">>", 2) || !memcmp(s, "<&", 2) || !memcmp(s, ">&", 2) ||
		    !memcmp(s, "<>", 2) || !memcmp(s, ">|", 2) || !memcmp(s, "&>", 2))) {
		p->i += 2;
	} else {
		p->i += 1;
	}
	while (p->i < p->len && (p->s[p->i] == ' ' || p->s[p->i] == '\t'))
		p->i++;
	if (p->i >= p->len || is_meta(p->s[p->i])) {
		p_error(p, "redirection without a target");
		return;
	}
	Word w = {0};
	read_word(p, &w, c, depth);
	if (heredoc && !p->failed) {
		if (p->n_hd >= FL_ARRAY_SIZE(p->hd)) {
			p_error(p, "too many here-documents");
			free(w.s);
			return;
		}
		p->hd[p->n_hd++] = (Heredoc){.delim = w.s ? w.s : strdup(""),
					     .strip_tabs = strip,
					     .expand = !(w.flags & WF_QUOTED)};
		if (!p->hd[p->n_hd - 1].delim)
			p->nomem = p->failed = true;
		w.s = NULL;
	}
	free(w.s);
}

/*
 * A list of commands until the end of the text or, with until_paren, an
 * unmatched ')'. outer is unused (kept for symmetry with nested calls).
 */
static void parse_list(P *p, unsigned depth, bool until_paren, Cmd *outer)
{
	Cmd c = {0};
	(void)outer;
	if (depth > FL_SHELL_MAX_DEPTH) {
		p_error(p, "nesting too deep");
		p->out->truncated = true;
		return;
	}
	while (!p->failed) {
		if (p->i >= p->len) {
			if (until_paren)
				p_error(p, "unterminated (");
			break;
		}
		char ch = p->s[p->i];
		if (ch == ' ' || ch == '\t') {
			p->i++;
			continue;
		}
		if (ch == '\\' && p->i + 1 < p->len && p->s[p->i + 1] == '\n') {
			p->i += 2;
			continue;
		}
		if (ch == '#') {
			while (p->i < p->len && p->s[p->i] != '\n')
				p->i++;
			continue;
		}
		if (ch == '\n') {
			p->i++;
			finish_cmd(p, &c, depth);
			read_heredocs(p, &c, depth);
			continue;
		}
		if (ch == ';' || ch == '&' || ch == '|') {
			p->i++;
			if (p->i < p->len && (p->s[p->i] == ch || (ch == '|' && p->s[p->i] == '&')))
				p->i++;
			if (ch == '&' && p->i < p->len && p->s[p->i] == '>') {
				p->i--; /* "&>" is a redirection */
				read_redirect(p, &c, depth);
				continue;
			}
			finish_cmd(p, &c, depth);
			continue;
		}
		if (ch == ')') {
			p->i++;
			if (!until_paren) {
				p_error(p, "unexpected )");
				break;
			}
			finish_cmd(p, &c, depth);
			cmd_clear(&c);
			return;
		}
		if (ch == '(') {
			p->i++;
			if (c.argc == 1) {
				/* "name ( )": a function definition; its body follows */
				while (p->i < p->len && (p->s[p->i] == ' ' || p->s[p->i] == '\t'))
					p->i++;
				if (p->i < p->len && p->s[p->i] == ')') {
					p->i++;
					cmd_clear(&c);
					continue;
				}
				p_error(p, "unexpected (");
				break;
			}
			if (c.argc) {
				p_error(p, "unexpected (");
				break;
			}
			parse_list(p, depth + 1, true, NULL);
			continue;
		}
		if ((ch == '<' || ch == '>') && p->i + 1 < p->len && p->s[p->i + 1] == '(') {
			/* process substitution: a word whose text is a command list */
			p->i += 2;
			parse_list(p, depth + 1, true, NULL);
			Word w = {.flags = WF_EXPANDED};
			word_put(p, &w, '/');
			cmd_push(p, &c, &w);
			c.words_started = true;
			continue;
		}
		if (ch == '<' || ch == '>') {
			read_redirect(p, &c, depth);
			continue;
		}
		Word w = {0};
		read_word(p, &w, &c, depth);
		if (p->failed) {
			free(w.s);
			break;
		}
		/* "2>file": the digits were an IO number, not a word */
		if (p->i < p->len && (p->s[p->i] == '<' || p->s[p->i] == '>') && w.len &&
		    !w.flags && strspn(w.s, "0123456789") == w.len) {
			free(w.s);
			continue;
		}
		if (!c.words_started && (w.flags & WF_ASSIGN)) {
			free(w.s); /* FOO=x before the command: not a word of it */
			continue;
		}
		c.words_started = true;
		cmd_push(p, &c, &w);
		free(w.s);
	}
	finish_cmd(p, &c, depth);
}

void fl_shell_cmds_clear(FlShellCmds *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		for (size_t k = 0; k < c->v[i].argc; k++)
			free(c->v[i].argv[k]);
		free(c->v[i].argv);
	}
	free(c->v);
	memset(c, 0, sizeof(*c));
}

int fl_shell_parse(const char *line, FlShellCmds *ret)
{
	memset(ret, 0, sizeof(*ret));
	size_t len = strlen(line), words = 0;
	if (len > FL_SHELL_MAX_LEN) {
		snprintf(ret->error, sizeof(ret->error), "longer than %u bytes", FL_SHELL_MAX_LEN);
		ret->truncated = true;
		return 0;
	}
	P p = {.s = line, .len = len, .out = ret, .words = &words};
	parse_list(&p, 0, false, NULL);
	for (size_t i = 0; i < p.n_hd; i++)
		free(p.hd[i].delim);
	if (p.nomem) {
		fl_shell_cmds_clear(ret);
		return -ENOMEM;
	}
	return 0;
}

int fl_shell_parse_argv(const char *const *argv, FlShellCmds *ret)
{
	memset(ret, 0, sizeof(*ret));
	size_t n = 0, words = 0;
	while (argv[n])
		n++;
	if (n > FL_SHELL_MAX_WORDS) {
		snprintf(ret->error, sizeof(ret->error), "more than %u words", FL_SHELL_MAX_WORDS);
		ret->truncated = true;
		return 0;
	}
	P p = {.s = "", .len = 0, .out = ret, .words = &words};
	resolve(&p, (char **)argv, NULL, n, false, NULL, false, 0, 0);
	if (p.nomem) {
		fl_shell_cmds_clear(ret);
		return -ENOMEM;
	}
	return 0;
}

/* ======================================================================
 * Decisions
 * ====================================================================== */

bool fl_policy_has_command_rules(const FlPolicy *p)
{
	return p->commands.deny.n || p->commands.approval.n || p->commands.allow.n;
}

/* "a b c" from argv with the program as given (or its basename). */
static char *join_argv(const FlShellCmd *c, bool base)
{
	size_t total = 1;
	for (size_t i = 0; i < c->argc; i++)
		total += strlen(c->argv[i]) + 1;
	char *s = malloc(total), *o = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < c->argc; i++) {
		const char *a = i == 0 && base ? base_name(c->argv[0]) : c->argv[i];
		if (i)
			*o++ = ' ';
		size_t l = strlen(a);
		memcpy(o, a, l);
		o += l;
	}
	*o = 0;
	return s;
}

static const char *match_rules(const FlPolicyRules *r, const FlShellCmd *c, const char *full,
			       const char *full_base, bool prog_prefix)
{
	const char *prog = c->argv[0], *base = base_name(c->argv[0]);
	for (size_t i = 0; i < r->n; i++) {
		const char *pat = r->v[i];
		if (!strchr(pat, ' ')) {
			if (!fnmatch(pat, base, 0) || !fnmatch(pat, prog, 0))
				return pat;
			continue;
		}
		if (!fnmatch(pat, full_base, 0) || !fnmatch(pat, full, 0))
			return pat;
		if (prog_prefix) {
			/* arguments still to come: the rule's program alone decides */
			char first[256];
			size_t l = (size_t)(strchr(pat, ' ') - pat);
			if (l < sizeof(first)) {
				memcpy(first, pat, l);
				first[l] = 0;
				if (!fnmatch(first, base, 0) || !fnmatch(first, prog, 0))
					return pat;
			}
		}
	}
	return NULL;
}

static void describe(const FlShellCmd *c, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < c->argc && o + 1 < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? " " : "", c->argv[i]);
}

static int decide_one(const FlPolicy *p, const FlShellCmd *c, FlPolicyDecision *d)
{
	d->rule[0] = 0;
	describe(c, d->command, sizeof(d->command));
	if (!fl_policy_has_command_rules(p)) {
		d->action = FL_POLICY_ALLOW;
		return 0;
	}
	if (c->opaque || !c->argc) {
		d->action = p->commands.opaque;
		snprintf(d->rule, sizeof(d->rule), "opaque: %s",
			 c->reason[0] ? c->reason : "unknown");
		return 0;
	}
	_cleanup_free_ char *full = join_argv(c, false);
	_cleanup_free_ char *fb = join_argv(c, true);
	if (!full || !fb)
		return -ENOMEM;
	const char *m;
	if ((m = match_rules(&p->commands.deny, c, full, fb, c->dynamic_args))) {
		d->action = FL_POLICY_DENY;
		snprintf(d->rule, sizeof(d->rule), "deny: %s", m);
	} else if ((m = match_rules(&p->commands.approval, c, full, fb, c->dynamic_args))) {
		d->action = FL_POLICY_APPROVAL;
		snprintf(d->rule, sizeof(d->rule), "approval: %s", m);
	} else if ((m = match_rules(&p->commands.allow, c, full, fb, false))) {
		d->action = FL_POLICY_ALLOW;
		snprintf(d->rule, sizeof(d->rule), "allow: %s", m);
	} else if (p->commands.allow.n) {
		d->action = FL_POLICY_DENY;
		snprintf(d->rule, sizeof(d->rule), "allowlist: no allow rule matches");
	} else {
		d->action = FL_POLICY_ALLOW;
	}
	return 0;
}

int fl_policy_check_command(const FlPolicy *p, const char *shell, const char *const *argv,
			    FlPolicyDecision *ret)
{
	FlShellCmds cmds;
	int r = shell ? fl_shell_parse(shell, &cmds) : fl_shell_parse_argv(argv, &cmds);
	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->action = FL_POLICY_ALLOW;
	if (!fl_policy_has_command_rules(p)) {
		fl_shell_cmds_clear(&cmds);
		return 0;
	}
	if (cmds.error[0]) {
		ret->action = p->commands.opaque;
		snprintf(ret->rule, sizeof(ret->rule), "opaque: the command line %s", cmds.error);
		snprintf(ret->command, sizeof(ret->command), "%.*s", 200, shell ? shell : "");
		fl_shell_cmds_clear(&cmds);
		return 0;
	}
	bool first = true;
	for (size_t i = 0; i < cmds.n; i++) {
		FlPolicyDecision d;
		if ((r = decide_one(p, &cmds.v[i], &d)) < 0) {
			fl_shell_cmds_clear(&cmds);
			return r;
		}
		if (first || d.action > ret->action) {
			*ret = d;
			first = false;
		}
	}
	fl_shell_cmds_clear(&cmds);
	return 0;
}

/* ======================================================================
 * Paths
 * ====================================================================== */

int fl_policy_path_normalize(const char *in, char *out, size_t len)
{
	if (!in || in[0] != '/')
		return -EINVAL;
	if (len < 2)
		return -ENAMETOOLONG;
	size_t o = 0;
	const char *s = in;
	while (*s) {
		while (*s == '/')
			s++;
		const char *e = s;
		while (*e && *e != '/') {
			if ((unsigned char)*e < 0x20 || *e == 0x7f)
				return -EINVAL;
			e++;
		}
		size_t l = (size_t)(e - s);
		if (l == 0)
			break;
		if (l == 1 && s[0] == '.') {
		} else if (l == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* the slash */
		} else {
			if (o + 1 + l + 1 > len)
				return -ENAMETOOLONG;
			out[o++] = '/';
			memcpy(out + o, s, l);
			o += l;
		}
		s = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	return 0;
}

static bool under(const char *path, const char *prefix)
{
	size_t l = strlen(prefix);
	if (!strcmp(prefix, "/"))
		return true;
	return !strncmp(path, prefix, l) && (path[l] == 0 || path[l] == '/');
}

bool fl_policy_path_allowed(const FlPolicy *p, const char *norm, bool write,
			    const char **ret_denied_by)
{
	const FlPolicyRules *lists[2] = {&p->files.write, write ? NULL : &p->files.read};
	if (!p->files.read.n && !p->files.write.n)
		return true;
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; lists[k] && i < lists[k]->n; i++)
			if (under(norm, lists[k]->v[i]))
				return true;
	if (ret_denied_by)
		*ret_denied_by = write ? "files.write" : "files.read";
	return false;
}

/* ======================================================================
 * Networks
 * ====================================================================== */

static int parse_uint_str(const char *s, size_t len, unsigned max, unsigned *ret)
{
	unsigned v = 0;
	if (!len || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

int fl_policy_parse_net(const char *s, FlPolicyNet *ret)
{
	char ip[32];
	const char *colon = strchr(s, ':');
	const char *slash = strchr(s, '/');
	size_t iplen = slash ? (size_t)(slash - s) : colon ? (size_t)(colon - s) : strlen(s);
	if (iplen == 0 || iplen >= sizeof(ip) || (slash && colon && slash > colon))
		return -EINVAL;
	memcpy(ip, s, iplen);
	ip[iplen] = 0;
	struct in_addr a;
	if (inet_pton(AF_INET, ip, &a) != 1)
		return -EINVAL;
	FlPolicyNet n = {.addr = ntohl(a.s_addr), .prefix = 32, .port_lo = 0, .port_hi = 65535};
	if (slash) {
		const char *pe = colon ? colon : slash + strlen(slash);
		if (parse_uint_str(slash + 1, (size_t)(pe - slash - 1), 32, &n.prefix) < 0)
			return -EINVAL;
	}
	if (n.prefix < 32 && (n.addr & (n.prefix ? 0xffffffffu >> n.prefix : 0xffffffffu)))
		return -EINVAL; /* host bits set: almost always a typo */
	if (colon) {
		const char *dash = strchr(colon + 1, '-');
		size_t l1 = dash ? (size_t)(dash - colon - 1) : strlen(colon + 1);
		if (parse_uint_str(colon + 1, l1, 65535, &n.port_lo) < 0)
			return -EINVAL;
		n.port_hi = n.port_lo;
		if (dash && parse_uint_str(dash + 1, strlen(dash + 1), 65535, &n.port_hi) < 0)
			return -EINVAL;
		if (n.port_lo == 0 || n.port_hi < n.port_lo)
			return -EINVAL;
	}
	*ret = n;
	return 0;
}

void fl_policy_format_net(const FlPolicyNet *n, char *buf, size_t len)
{
	struct in_addr a = {.s_addr = htonl(n->addr)};
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	if (n->port_lo == 0 && n->port_hi == 65535)
		snprintf(buf, len, "%s/%u", ip, n->prefix);
	else if (n->port_lo == n->port_hi)
		snprintf(buf, len, "%s/%u:%u", ip, n->prefix, n->port_lo);
	else
		snprintf(buf, len, "%s/%u:%u-%u", ip, n->prefix, n->port_lo, n->port_hi);
}

/* ======================================================================
 * Policy objects
 * ====================================================================== */

static void rules_free(FlPolicyRules *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

void fl_policy_free(FlPolicy *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->description);
	rules_free(&p->commands.deny);
	rules_free(&p->commands.approval);
	rules_free(&p->commands.allow);
	rules_free(&p->files.read);
	rules_free(&p->files.write);
	free(p->network.allow);
	free(p);
}

static FlPolicy *policy_alloc(const char *name)
{
	FlPolicy *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->name = strdup(name ? name : "default");
	if (!p->name) {
		free(p);
		return NULL;
	}
	p->commands.opaque = FL_POLICY_DENY;
	p->commands.approval_timeout_sec = 300;
	p->limits.timeout_sec = 600;
	p->limits.max_timeout_sec = 86400;
	p->network.egress = FL_EGRESS_NAT;
	return p;
}

int fl_policy_new_default(const char *name, FlPolicy **ret)
{
	FlPolicy *p = policy_alloc(name);
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

static int reject_unknown(struct json_object *o, const char *where, const char *const *allowed,
			  FlError *err)
{
	json_object_object_foreach(o, k, v)
	{
		(void)v;
		if (!in_list(k, allowed))
			return fl_error_set(err, -EINVAL, "unknown key '%s' in %s", k, where);
	}
	return 0;
}

static int get_obj(struct json_object *o, const char *key, const char *where,
		   struct json_object **ret, FlError *err)
{
	struct json_object *v = NULL;
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return fl_error_set(err, -EINVAL, "%s.%s: expected a mapping", where, key);
	*ret = v;
	return 0;
}

static int get_u64(struct json_object *o, const char *key, const char *where, uint64_t min,
		   uint64_t max, uint64_t *dst, FlError *err)
{
	struct json_object *v = NULL;
	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return fl_error_set(err, -EINVAL, "%s.%s: expected a non-negative integer", where,
				    key);
	uint64_t x = (uint64_t)json_object_get_int64(v);
	if (x < min || x > max)
		return fl_error_set(err, -EINVAL, "%s.%s: %llu is out of range %llu..%llu", where,
				    key, (unsigned long long)x, (unsigned long long)min,
				    (unsigned long long)max);
	*dst = x;
	return 0;
}

static int get_unsigned(struct json_object *o, const char *key, const char *where, unsigned min,
			unsigned max, unsigned *dst, FlError *err)
{
	uint64_t v = *dst;
	int r = get_u64(o, key, where, min, max, &v, err);
	if (r >= 0)
		*dst = (unsigned)v;
	return r;
}

static int get_strings(struct json_object *o, const char *key, const char *where, bool paths,
		       FlPolicyRules *dst, FlError *err)
{
	struct json_object *v = NULL;
	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return fl_error_set(err, -EINVAL, "%s.%s: expected a list of strings", where, key);
	size_t n = json_object_array_length(v);
	if (n > FL_POLICY_MAX_RULES)
		return fl_error_set(err, -EINVAL, "%s.%s: more than %d entries", where, key,
				    FL_POLICY_MAX_RULES);
	dst->v = calloc(n ? n : 1, sizeof(char *));
	if (!dst->v)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_string))
			return fl_error_set(err, -EINVAL, "%s.%s[%zu]: expected a string", where,
					    key, i);
		const char *s = json_object_get_string(e);
		size_t l = strlen(s);
		if (l == 0 || l > 1024 || l != (size_t)json_object_get_string_len(e))
			return fl_error_set(err, -EINVAL,
					    "%s.%s[%zu]: empty, too long or has a NUL", where, key,
					    i);
		char norm[4096];
		if (paths) {
			if (fl_policy_path_normalize(s, norm, sizeof(norm)) < 0)
				return fl_error_set(err, -EINVAL,
						    "%s.%s[%zu]: '%s' is not an absolute path",
						    where, key, i, s);
			s = norm;
		}
		dst->v[i] = strdup(s);
		if (!dst->v[i])
			return fl_error_set(err, -ENOMEM, "out of memory");
		dst->n = i + 1;
	}
	return 0;
}

static int get_string(struct json_object *o, const char *key, const char *where, const char **ret,
		      FlError *err)
{
	struct json_object *v = NULL;
	*ret = NULL;
	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return fl_error_set(err, -EINVAL, "%s.%s: expected a string", where, key);
	*ret = json_object_get_string(v);
	return 0;
}

int fl_policy_from_json(const char *name, struct json_object *obj, FlPolicy **ret, FlError *err)
{
	static const char *const top_keys[] = {"description", "commands", "files", "limits",
					       "network",     "name",	  NULL};
	static const char *const cmd_keys[] = {
		"deny", "approval", "allow", "opaque", "approval_timeout_sec", "interactive", NULL};
	static const char *const file_keys[] = {"read", "write", NULL};
	static const char *const limit_keys[] = {
		"timeout_sec",	  "max_timeout_sec", "output_bytes",
		"max_file_bytes", "max_sandboxes",   "max_vcpus",
		"max_memory_mb",  "max_ttl_seconds", NULL};
	static const char *const net_keys[] = {"egress", "allow", NULL};
	_cleanup_(fl_policy_freep) FlPolicy *p = policy_alloc(name);
	struct json_object *cmds, *files, *limits, *net;
	const char *s;
	int r;

	if (!p)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (obj && !json_object_is_type(obj, json_type_object))
		return fl_error_set(err, -EINVAL, "a policy must be a mapping");
	if (!obj)
		goto done;
	if ((r = reject_unknown(obj, "the policy", top_keys, err)) < 0 ||
	    (r = get_string(obj, "description", "policy", &s, err)) < 0)
		return r;
	if (s && !(p->description = strdup(s)))
		return fl_error_set(err, -ENOMEM, "out of memory");
	if ((r = get_obj(obj, "commands", "policy", &cmds, err)) < 0 ||
	    (r = get_obj(obj, "files", "policy", &files, err)) < 0 ||
	    (r = get_obj(obj, "limits", "policy", &limits, err)) < 0 ||
	    (r = get_obj(obj, "network", "policy", &net, err)) < 0)
		return r;
	if (cmds) {
		if ((r = reject_unknown(cmds, "commands", cmd_keys, err)) < 0 ||
		    (r = get_strings(cmds, "deny", "commands", false, &p->commands.deny, err)) <
			    0 ||
		    (r = get_strings(cmds, "approval", "commands", false, &p->commands.approval,
				     err)) < 0 ||
		    (r = get_strings(cmds, "allow", "commands", false, &p->commands.allow, err)) <
			    0 ||
		    (r = get_unsigned(cmds, "approval_timeout_sec", "commands", 1, 86400,
				      &p->commands.approval_timeout_sec, err)) < 0 ||
		    (r = get_string(cmds, "opaque", "commands", &s, err)) < 0)
			return r;
		struct json_object *iv;
		if (json_object_object_get_ex(cmds, "interactive", &iv)) {
			if (!json_object_is_type(iv, json_type_boolean))
				return fl_error_set(err, -EINVAL, "commands.interactive: true or false");
			p->commands.interactive = json_object_get_boolean(iv);
		}
		if (s && !strcmp(s, "deny"))
			p->commands.opaque = FL_POLICY_DENY;
		else if (s && !strcmp(s, "approval"))
			p->commands.opaque = FL_POLICY_APPROVAL;
		else if (s)
			return fl_error_set(err, -EINVAL,
					    "commands.opaque: '%s' is not deny or approval", s);
	}
	if (files && ((r = reject_unknown(files, "files", file_keys, err)) < 0 ||
		      (r = get_strings(files, "read", "files", true, &p->files.read, err)) < 0 ||
		      (r = get_strings(files, "write", "files", true, &p->files.write, err)) < 0))
		return r;
	if (limits) {
		if ((r = reject_unknown(limits, "limits", limit_keys, err)) < 0 ||
		    (r = get_unsigned(limits, "timeout_sec", "limits", 1, 86400,
				      &p->limits.timeout_sec, err)) < 0 ||
		    (r = get_unsigned(limits, "max_timeout_sec", "limits", 1, 86400,
				      &p->limits.max_timeout_sec, err)) < 0 ||
		    (r = get_u64(limits, "output_bytes", "limits", 0, 1ull << 30,
				 &p->limits.output_bytes, err)) < 0 ||
		    (r = get_u64(limits, "max_file_bytes", "limits", 0, 1ull << 50,
				 &p->limits.max_file_bytes, err)) < 0 ||
		    (r = get_unsigned(limits, "max_sandboxes", "limits", 0, 4096,
				      &p->limits.max_sandboxes, err)) < 0 ||
		    (r = get_unsigned(limits, "max_vcpus", "limits", 0, 256, &p->limits.max_vcpus,
				      err)) < 0 ||
		    (r = get_unsigned(limits, "max_memory_mb", "limits", 0, 1u << 20,
				      &p->limits.max_memory_mb, err)) < 0 ||
		    (r = get_u64(limits, "max_ttl_seconds", "limits", 0, UINT32_MAX,
				 &p->limits.max_ttl_seconds, err)) < 0)
			return r;
		if (p->limits.timeout_sec > p->limits.max_timeout_sec)
			return fl_error_set(err, -EINVAL,
					    "limits.timeout_sec is above limits.max_timeout_sec");
	}
	if (net) {
		if ((r = reject_unknown(net, "network", net_keys, err)) < 0 ||
		    (r = get_string(net, "egress", "network", &s, err)) < 0)
			return r;
		if (!s || !strcmp(s, "nat"))
			p->network.egress = FL_EGRESS_NAT;
		else if (!strcmp(s, "none"))
			p->network.egress = FL_EGRESS_NONE;
		else if (!strcmp(s, "allowlist"))
			p->network.egress = FL_EGRESS_ALLOWLIST;
		else
			return fl_error_set(err, -EINVAL,
					    "network.egress: '%s' is not none, nat or allowlist",
					    s);
		FlPolicyRules list = {0};
		r = get_strings(net, "allow", "network", false, &list, err);
		if (r >= 0 && list.n > FL_POLICY_MAX_NET)
			r = fl_error_set(err, -EINVAL, "network.allow: more than %d entries",
					 FL_POLICY_MAX_NET);
		if (r >= 0 && list.n && p->network.egress != FL_EGRESS_ALLOWLIST)
			r = fl_error_set(err, -EINVAL, "network.allow needs egress: allowlist");
		if (r >= 0 && list.n) {
			p->network.allow = calloc(list.n, sizeof(*p->network.allow));
			if (!p->network.allow)
				r = fl_error_set(err, -ENOMEM, "out of memory");
			for (size_t i = 0; r >= 0 && i < list.n; i++) {
				if (fl_policy_parse_net(list.v[i], &p->network.allow[i]) < 0)
					r = fl_error_set(err, -EINVAL,
							 "network.allow[%zu]: '%s' is not "
							 "CIDR[:PORT[-PORT]]",
							 i, list.v[i]);
				p->network.n_allow = i + 1;
			}
		}
		rules_free(&list);
		if (r < 0)
			return r;
	}
done:
	*ret = TAKE_PTR(p);
	return 0;
}

static struct json_object *rules_json(const FlPolicyRules *r)
{
	struct json_object *a = json_object_new_array();
	for (size_t i = 0; a && i < r->n; i++)
		json_object_array_add(a, json_object_new_string(r->v[i]));
	return a;
}

struct json_object *fl_policy_to_json(const FlPolicy *p)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(p->name));
	json_object_object_add(o, "description",
			       p->description ? json_object_new_string(p->description) : NULL);
	struct json_object *c = json_object_new_object();
	json_object_object_add(c, "deny", rules_json(&p->commands.deny));
	json_object_object_add(c, "approval", rules_json(&p->commands.approval));
	json_object_object_add(c, "allow", rules_json(&p->commands.allow));
	json_object_object_add(c, "opaque",
			       json_object_new_string(fl_policy_action_name(p->commands.opaque)));
	json_object_object_add(c, "approval_timeout_sec",
			       json_object_new_int64(p->commands.approval_timeout_sec));
	json_object_object_add(c, "interactive", json_object_new_boolean(p->commands.interactive));
	json_object_object_add(o, "commands", c);
	struct json_object *f = json_object_new_object();
	json_object_object_add(f, "read", rules_json(&p->files.read));
	json_object_object_add(f, "write", rules_json(&p->files.write));
	json_object_object_add(o, "files", f);
	struct json_object *l = json_object_new_object();
	json_object_object_add(l, "timeout_sec", json_object_new_int64(p->limits.timeout_sec));
	json_object_object_add(l, "max_timeout_sec",
			       json_object_new_int64(p->limits.max_timeout_sec));
	json_object_object_add(l, "output_bytes",
			       json_object_new_int64((int64_t)p->limits.output_bytes));
	json_object_object_add(l, "max_file_bytes",
			       json_object_new_int64((int64_t)p->limits.max_file_bytes));
	json_object_object_add(l, "max_sandboxes", json_object_new_int64(p->limits.max_sandboxes));
	json_object_object_add(l, "max_vcpus", json_object_new_int64(p->limits.max_vcpus));
	json_object_object_add(l, "max_memory_mb", json_object_new_int64(p->limits.max_memory_mb));
	json_object_object_add(l, "max_ttl_seconds",
			       json_object_new_int64((int64_t)p->limits.max_ttl_seconds));
	json_object_object_add(o, "limits", l);
	struct json_object *n = json_object_new_object();
	static const char *const eg[] = {"nat", "none", "allowlist"};
	json_object_object_add(n, "egress", json_object_new_string(eg[p->network.egress]));
	struct json_object *a = json_object_new_array();
	for (size_t i = 0; i < p->network.n_allow; i++) {
		char buf[64];
		fl_policy_format_net(&p->network.allow[i], buf, sizeof(buf));
		json_object_array_add(a, json_object_new_string(buf));
	}
	json_object_object_add(n, "allow", a);
	json_object_object_add(o, "network", n);
	return o;
}
