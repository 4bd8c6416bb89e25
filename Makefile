# The two commands of the README, and what they need. Both do their own set-up:
#   make demo   simulated sensors -> gateway -> loopback broker, live
#   make test   lint, type check and the whole test suite against real peers, which includes
#               the wheel test: build the wheel, install it into a fresh venv, run it from there
#   make install-test   install.sh, the unit and uninstall.sh on a booted Debian container
#               (systemd as PID 1; root only; its root file system is cached in
#               /var/cache/cgw-test-root, so only the first run downloads it)
#
# System packages: installed with apt-get when run as root; otherwise the exact command is
# printed and make stops.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# command:package pairs the tests and the demo need
SYSTEM_DEPS := mosquitto:mosquitto mosquitto_sub:mosquitto-clients socat:socat openssl:openssl \
	chromium:chromium chromedriver:chromium-driver strace:strace \
	victoria-metrics:victoria-metrics

.PHONY: demo test install-test lint typecheck unit wheel-test bench screenshots system-deps venv \
	clean

demo: system-deps venv
	$(BIN)/cgw demo

test: system-deps venv lint typecheck
	$(BIN)/pytest -q

# systemd-nspawn boots the container, debootstrap builds its root; both are extra system deps
install-test: SYSTEM_DEPS += debootstrap:debootstrap systemd-nspawn:systemd-container
install-test: system-deps venv
	$(BIN)/pytest -q -m install tests/install

unit: venv
	$(BIN)/pytest -q tests/unit

# the packaging check alone (part of make test): data files the code reads must be package data
wheel-test: system-deps venv
	$(BIN)/pytest -q tests/e2e/test_wheel.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo --no-cache  # the layer rules in pyproject.toml

typecheck: venv
	$(BIN)/mypy

# the console's screenshots in docs/console/, taken by its browser tests; Chinese text needs a
# CJK font on this machine (a phone or PC browser has its own)
screenshots: system-deps venv
	@fc-list | grep -qi 'wenquanyi\|noto sans cjk' || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei; \
		else echo "a CJK font is needed: sudo apt-get install -y fonts-wqy-zenhei"; exit 1; fi; }
	CGW_SCREENSHOTS=1 $(BIN)/pytest -q tests/e2e/test_console.py tests/e2e/test_console_reports.py \
		tests/e2e/test_console_welfare.py

bench: system-deps venv
	$(BIN)/python bench/throughput.py

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is required ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || \
		[ -x "/usr/sbin/$${pair%%:*}" ] || missing="$$missing $${pair##*:}"; \
	done; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing system packages. Run:"; \
			echo "  sudo apt-get update && sudo apt-get install -y$$missing"; \
			exit 1; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
