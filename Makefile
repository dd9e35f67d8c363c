# nwt: the two commands of the README are `make repro` and `make test`.
VENV  := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export RAY_AUTH_MODE := disabled

.PHONY: setup repro test bench profile clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

## set up, run the whole pipeline on the embedded synthetic corpus, show the metrics
repro: setup
	dvc repro
	dvc metrics show

## set up and run the test suite (what .ci/run calls)
test: setup
	pytest -q

## benchmarks: figures printed and written to reports/bench.json
bench: setup
	python scripts/bench.py

## apply a params profile, e.g. `make profile P=large` (profiles/*.yaml over params.yaml)
profile: setup
	python scripts/apply_profile.py profiles/$(P).yaml

clean:
	rm -rf $(VENV) .pytest_cache
