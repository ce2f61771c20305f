# Two commands on a fresh machine with Python 3.11+ and make:
#   make demo   sets up .venv, then runs the main job on embedded defaults
#   make test   sets up .venv, then runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo-output

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

P := $(DEMO)/province
LAST_DAY := 2026-03-09T00:00:00+09:00

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/recommender simulate --out $(P) --staff 30000 --days 8 --start 2026-03-02 --seed 7
	$(BIN)/recommender validate --staff $(P)/staff.csv --banners $(P)/banners.json --impressions $(P)/impressions.jsonl
	$(BIN)/recommender train --staff $(P)/staff.csv --banners $(P)/banners.json --impressions $(P)/impressions.jsonl --until $(LAST_DAY) --out $(DEMO)/models
	$(BIN)/recommender quality --province $(P) --since $(LAST_DAY) --model "$$(ls -d $(DEMO)/models/*/ | tail -1)"
	$(BIN)/recommender evaluate --staff $(P)/staff.csv --banners $(P)/banners.json --impressions $(P)/impressions.jsonl --since $(LAST_DAY) --policy "$$(ls -d $(DEMO)/models/*/ | tail -1)" --policy popularity --policy logged --json $(DEMO)/offline-ab.json --report $(DEMO)/offline-ab.html
	@echo "offline A/B report: $(DEMO)/offline-ab.html"
	$(BIN)/recommender models --config service.example.toml promote latest
	@echo
	@echo "Serving on http://127.0.0.1:8000 (Ctrl-C stops). In another shell:"
	@echo "  curl -s http://127.0.0.1:8000/v1/rank -H 'X-API-Key: demo-client-key' -H 'Content-Type: application/json' -d '{\"staff_id\": \"s-000017\"}'"
	@echo
	$(BIN)/recommender serve --config service.example.toml

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_service.py

clean:
	rm -rf $(VENV) $(DEMO)
