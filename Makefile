# The project's front door: `make help` lists the targets.
PY      ?= .venv/bin/python
PIP     ?= .venv/bin/pip
SHARDS  ?= data/shards
EXP     ?= smoke
FIXTURES ?= ../shared/fixtures
OVERFIT ?= data/overfit
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_ERROR_REPORTING := false
# A fresh clone needs nothing but make: the targets that run the project build ./.venv first when it is missing.
VENV    := $(if $(filter .venv/bin/python,$(PY)),.venv/.installed)

.PHONY: help install test test-full lint shards train overfit overfit-real bench bench-runtime gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install:  ## create ./.venv and install the project (CPU torch 2.13.0 first when there is no GPU)
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: torch comes from the dependency range"; \
	else \
		$(PIP) install -q torch==2.13.0; \
	fi
	$(PIP) install -q -e '.[dev]'
	@touch .venv/.installed

.venv/.installed:
	$(MAKE) install

test: $(VENV) ## the fast suite (about 10 minutes on 2 cores)
	$(PY) -m pytest -q -m "not slow"

test-full: $(VENV) ## everything, including the slow end-to-end runs
	$(PY) -m pytest -q

lint: $(VENV) ## ruff
	$(PY) -m ruff check src datamodules sharding bench tests

bench: $(VENV) ## targets, decoder, sharding and loader speed; ends with one JSON line (see docs/speed.md)
	$(PY) -m bench

bench-runtime: $(VENV) ## runtime vs people (paper Fig. 4): single network vs per-person cascade, CPU (device=cuda on a GPU)
	$(PY) -m bench.runtime $(ARGS)

gpu-check: $(VENV) ## on a GPU machine (<= 8 min, no network): CUDA tests, training img/s, MFU, memory, data wait; one JSON line
	$(PY) -m bench.gpu_check $(ARGS)

shards: $(VENV) ## build the WebDataset shards into $(SHARDS) (synthetic world by default; conf/shards.yaml)
	$(PY) -m sharding out_dir=$(SHARDS)

train: $(VENV) ## the main job: synthetic shards if missing, train EXP (smoke: CPU) -> logs/EXP/last_metrics.json
	@test -f $(SHARDS)/synth_wholebody/val/gt.json || $(PY) -m sharding out_dir=$(SHARDS)
	$(PY) -m src.train +experiment=$(EXP) data.root=$(SHARDS) $(ARGS)

overfit: $(VENV) ## memorise your COCO keypoint file: ANN=FILE IMAGES=DIR [LAYOUT=FILE SIGMAS=[..]] -> logs/overfit
	@test -n "$(ANN)" && test -n "$(IMAGES)" || \
		{ echo "make overfit needs ANN=FILE.json IMAGES=DIR (optional: LAYOUT=FILE, or SIGMAS=[...])"; exit 2; }
	@mkdir -p $(OVERFIT)/conf/layout
	@if [ -n "$(LAYOUT)" ]; then cp "$(LAYOUT)" $(OVERFIT)/conf/layout/overfit.yaml; else \
		$(PY) -m src.layout from_coco="$(ANN)" out=$(OVERFIT)/conf/layout/overfit.yaml $(if $(SIGMAS),'sigmas=$(SIGMAS)'); fi
	$(PY) -m sharding out_dir=$(OVERFIT) only=[custom] sources.custom.layout=$(OVERFIT)/conf/layout/overfit.yaml \
		sources.custom.train.ann="$(ANN)" sources.custom.train.images="$(IMAGES)" \
		sources.custom.val.ann="$(ANN)" sources.custom.val.images="$(IMAGES)"
	$(PY) -m src.train +experiment=overfit layout=overfit 'hydra.searchpath=[file://$(OVERFIT)/conf]' \
		data.root=$(OVERFIT) $(ARGS)

overfit-real: $(VENV) ## memorise 4 real COCO-WholeBody images (needs $(FIXTURES)) -> logs/overfit_real/last_metrics.json
	@test -f $(FIXTURES)/coco/test_coco_wholebody.json || \
		{ echo "overfit-real needs $(FIXTURES)/coco/test_coco_wholebody.json (the shared fixtures)"; exit 2; }
	$(PY) -m sharding out_dir=data/overfit_real only=[coco_wholebody] \
		sources.coco_wholebody.train.ann=$(FIXTURES)/coco/test_coco_wholebody.json \
		sources.coco_wholebody.train.images=$(FIXTURES)/coco \
		sources.coco_wholebody.val.ann=$(FIXTURES)/coco/test_coco_wholebody.json \
		sources.coco_wholebody.val.images=$(FIXTURES)/coco
	$(PY) -m src.train +experiment=overfit_real data.root=data/overfit_real $(ARGS)

clean:  ## remove logs and built shards
	rm -rf logs outputs multirun $(SHARDS) data/overfit_real $(OVERFIT)
