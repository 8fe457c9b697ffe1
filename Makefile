# Thin wrappers over scripts/ (the README's commands); every target sets up .venv first.
PY := .venv/bin/python

.PHONY: setup setup-system demo test lab bench

setup:
	bash scripts/setup.sh

setup-system:
	bash scripts/setup.sh --system

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lab:
	bash scripts/lab.sh

# Benchmarks print one table each and record their results (benchmarks/RESULTS.md); not part of CI.
bench: setup
	@set -e; found=0; for f in benchmarks/*.py; do \
		[ -f "$$f" ] || continue; found=1; echo "== $$f"; HF_HUB_OFFLINE=1 $(PY) "$$f"; \
	done; [ $$found = 1 ] || echo "bench: no benchmarks/*.py yet"
