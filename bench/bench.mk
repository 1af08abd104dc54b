# Benchmarks: Flywheel beside its peers on the same generated input, one command each; QUICK=1 is the small size.
# Each target sets up .venv-bench (bench/setup.sh, skipped once done) and ends with one `bench NAME: ...` line.

BENCH_PY := .venv-bench/bin/python
BENCH_ENV := QUICK=$(QUICK) NO_ALBUMENTATIONS_UPDATE=1 PYTHONWARNINGS=ignore

.PHONY: bench bench-setup bench-text-dedup bench-image-dedup bench-pii

bench: bench-text-dedup bench-image-dedup bench-pii bench-label-efficiency bench-label-loop bench-aggregation bench-sync bench-crawl bench-loader bench-scale bench-boxes

bench-setup:
	bash bench/setup.sh

bench-text-dedup: bench-setup
	$(BENCH_ENV) $(BENCH_PY) bench/text_dedup.py

bench-image-dedup: bench-setup
	$(BENCH_ENV) $(BENCH_PY) bench/image_dedup.py

bench-pii: bench-setup
	$(BENCH_ENV) $(BENCH_PY) bench/pii.py
