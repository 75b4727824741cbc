# Two commands on a fresh machine: `make study` and `make test`. Each sets itself up first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# the venv first; a real quarto on PATH wins over the offline stand-in in tools/
export PATH := $(BIN):$(PATH):$(CURDIR)/tools
export PYTHONHASHSEED := 0

.PHONY: setup study test sync nbtest docs check-docs pytest lab browser clean

setup: $(STAMP)

$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name bailando --display-name "Python (bailando)" >/dev/null
	@echo "setup: compiling librosa's kernels once (about a minute on a fresh machine)"
	$(BIN)/python -c "from bailando.data import warm_up_librosa; warm_up_librosa()"
	@touch $@

study: $(STAMP)
	$(BIN)/bailando study $(ARGS)

test: $(STAMP) browser
	@$(MAKE) --no-print-directory sync
	@$(MAKE) --no-print-directory nbtest
	@$(MAKE) --no-print-directory docs check-docs
	@$(MAKE) --no-print-directory pytest

sync: $(STAMP)
	@bash tools/check_sync.sh

nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing

docs: $(STAMP)
	$(BIN)/nbdev_docs --n_workers 2 2>&1 | sed '/output-file is not read by smalldocs/d;/broken link images\//d'   # the pictures are copied below; check-docs checks them
	@mkdir -p _docs/images && cp nbs/images/* _docs/images/   # the pages' pictures (smalldocs copies none)
	@echo "docs: site built into _docs/"

check-docs: $(STAMP)
	$(BIN)/python tools/check_docs.py

pytest: $(STAMP)
	$(BIN)/python -m pytest tests -p no:cacheprovider -q

lab: $(STAMP)
	$(BIN)/jupyter lab nbs

# The report test drives headless Chromium; as root we install Debian's package, otherwise the test skips
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "browser: chromium not installed (not root); the report's browser test will skip"; }

clean:
	rm -rf _docs _proc runs $(VENV)
