# Two entry points a new user needs: `make run` (the 20 mini prompts x 4 seeds through the queue, on the mini
# models that run on any CPU) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: run test install services-deps clean

$(BIN)/tipai: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and alone, as the pinned pair: a plain resolver run may pick a different wheel.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/tipai

install: $(BIN)/tipai services-deps

# Redis and Postgres servers from Debian when missing (the stack runs them itself, as local processes), and the
# Chromium the browser test drives.
services-deps:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql; }

run: install
	$(BIN)/tipai run data/prompts_mini.json --preset mini

test: install
	$(BIN)/python -m pytest

clean:
	-$(BIN)/tipai down
	rm -rf .tipai outputs
