# The two commands: `make run` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel of TensorFlow here and in CI; the Docker image installs the GPU build.
EXTRAS ?= cpu,dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: run test heavy chaos browser lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tinyres needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# API and both workers in the foreground on the embedded defaults, under supervisord:
# a process that dies is restarted, the others stay up; Ctrl-C or SIGTERM stops them all.
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/supervisord --nodaemon \
	  --configuration deploy/supervisord.conf \
	  --pidfile "$${TMPDIR:-/tmp}/tinyres-supervisord-$$$$.pid"

test: $(STAMP)
	$(BIN)/python -m pytest

# End-to-end suites of minutes: both Keras backends, cancel in every phase of a job, the
# object store under every scenario (real SeaweedFS); CI runs them too.
heavy: $(STAMP)
	$(BIN)/python -m pytest -m heavy

# Fault tests with real processes killed and restarted (minutes); CI runs them too.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos tests/chaos

# The dashboard in Debian's Chromium (/usr/bin/chromium) against a real API and worker
# (about two minutes); screenshots go to $$TINYRES_SCREENSHOTS when set.
browser: $(STAMP)
	$(BIN)/python -m pytest -m browser tests/dashboard

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app core worker model


clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
