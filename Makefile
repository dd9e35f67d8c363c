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

## set up, lint (ruff, configured in pyproject.toml) and run the test suite (what .ci/run calls)
test: setup
	ruff check .
	pytest -q

## benchmarks: figures printed and written to reports/bench.json
bench: setup
	python scripts/bench.py

## apply a params profile, e.g. `make profile P=tiny` or `P=dvae_large` (profiles/*.yaml over params.yaml)
profile: setup
	python scripts/apply_profile.py profiles/$(P).yaml

clean:
	rm -rf $(VENV) .pytest_cache

## make the whisperx ASR env for segment.backend=whisperx (own venv: whisperx 3.8.6 pins torch 2.8 + torchaudio; ≈5 min, ≈7.6 GB)
ASR_ENV ?= .asr-env
.PHONY: asr-env
asr-env:
	python3 -m venv $(ASR_ENV)
	$(ASR_ENV)/bin/pip install --upgrade pip
	$(ASR_ENV)/bin/pip install whisperx==3.8.6
	$(ASR_ENV)/bin/python -c "import whisperx; print('whisperx', whisperx.__version__ if hasattr(whisperx, '__version__') else 'ok', 'in $(ASR_ENV); models go to segment.whisperx.model_dir (models/asr) on first online run')"
