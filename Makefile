# Two entry points on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# Both run `setup` first, which is idempotent: Debian packages for the Arm cross toolchain and
# QEMU, clang with libFuzzer for the fuzz tests and PostgreSQL for the shared-sweep test
# (installed only if missing), and the project venv at ./.venv with the CLI in it.

PYTHON ?= python3
VENV   := .venv
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang libclang-rt-dev postgresql
PYTEST_ARGS ?=
# The default run spreads test files over three workers (pytest-xdist; many tests wait on QEMU
# or a subprocess, so a third worker fills the two cores); `make test PYTEST_JOBS=0`
# runs them in one process.
PYTEST_JOBS ?= 3

.PHONY: setup system-deps demo test soak bench clean

setup: system-deps $(VENV)/.installed

system-deps:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null && command -v clang >/dev/null \
	    && [ -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/libc_nano.a ] \
	    && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	    exit 0; fi; \
	echo "setup: installing Debian packages: $(APT_PACKAGES)"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "setup: error: need root or sudo to run: apt-get install -y --no-install-recommends $(APT_PACKAGES)" >&2; \
	    exit 1; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	    { echo "setup: error: nnmpc needs Python >= 3.11 (found $$($(PYTHON) --version))" >&2; exit 1; }
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV) || \
	    { echo "setup: error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
	@echo "setup: installing Python packages into $(VENV) (first run: a few minutes)"
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	@$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

demo: setup
	$(VENV)/bin/nnmpc demo

test: setup
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_JOBS) --dist loadfile --durations=20 $(PYTEST_ARGS)

soak: setup
	$(VENV)/bin/python -m pytest -q -m soak $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/nnmpc bench

clean:
	rm -rf build .pytest_cache
