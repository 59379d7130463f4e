# SPDX-License-Identifier: MIT
# webui/: the browser UI served from webui-dist/ (plain ES modules, HTML and
# CSS; no bundler). npm packages (webui/package.json) are installed by
# scripts/webui-deps.sh; the files the UI loads are copied into
# webui-dist/vendor/ (gitignored: every build produces them). `make webui`
# does just that; `make`, `make run` and `make test` include it.
# docs/webui.md describes the UI.

WEBUI_NM := webui/node_modules/.package-lock.json
WEBUI_VENDOR := webui-dist/vendor/xterm/xterm.js webui-dist/vendor/xterm/xterm.css \
	webui-dist/vendor/xterm/addon-fit.js

$(WEBUI_NM): webui/package.json webui/package-lock.json scripts/webui-deps.sh
	@./scripts/webui-deps.sh

webui-dist/vendor/xterm/xterm.js: $(WEBUI_NM)
	@mkdir -p $(@D)
	cp webui/node_modules/@xterm/xterm/lib/xterm.js $@
webui-dist/vendor/xterm/xterm.css: $(WEBUI_NM)
	@mkdir -p $(@D)
	cp webui/node_modules/@xterm/xterm/css/xterm.css $@
webui-dist/vendor/xterm/addon-fit.js: $(WEBUI_NM)
	@mkdir -p $(@D)
	cp webui/node_modules/@xterm/addon-fit/lib/addon-fit.js $@

.PHONY: webui
webui: $(WEBUI_VENDOR)
all: webui
