# Set-up and checks. `make demo` and `make test` are all a fresh machine needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-packages demo docs test test-fast clean

# CPU torch is pinned and installed first: letting a dependency pull `torch` fetches a CUDA build.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need (command -> package). Missing ones are installed when we can
# (root with apt-get); otherwise make stops before running anything and prints the command.
# slurmctld/munged: the one-node Slurm cluster that tests/test_parsl.py starts (tests/slurm_cluster.py).
SYSTEM_PACKAGES := cp2k_shell:cp2k chromium:chromium slurmctld:slurm-wlm munged:munge
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	  else \
	    echo "the tests need Debian packages:$$missing; install them with:" >&2; \
	    echo "  sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

demo: install
	$(VENV)/bin/campaign run specs/demo.yaml --workers 2
	$(VENV)/bin/campaign status specs/demo.yaml
	$(VENV)/bin/campaign report specs/demo.yaml

# The documentation site (site/); the tests build it too, with --strict
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Two pytest workers, a test file per worker at a time: module fixtures are built once, and
# the real-Slurm tests (one file) never start two clusters at once. Files go out in collection
# order (tests/conftest.py puts the longest first: the paper spec's whole rehearsal, about 19 min
# of one core, and the demo's).
# XLA maps 3-15 memory regions per compiled function, so long JAX processes grow their
# map count (the rehearsal's workers by about 1,500 a minute). Past Linux's default
# vm.max_map_count (65,530) mmap fails; the JAX MD test worker's crashes inside XLA fit that.
# Raised where we are root.
MAP_COUNT := 262144
test: system-packages install
	@if [ "$$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo $(MAP_COUNT))" -lt $(MAP_COUNT) ]; then \
	  sysctl -q -w vm.max_map_count=$(MAP_COUNT) 2>/dev/null || \
	  echo "warning: vm.max_map_count is below $(MAP_COUNT) and could not be raised; JAX MD test workers may crash" \
	       "(sudo sysctl -w vm.max_map_count=$(MAP_COUNT))" >&2; fi
	$(PY) -m pytest -q --durations=25 -n 2 --dist loadfile --no-loadscope-reorder

test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf campaigns .pytest_cache site
