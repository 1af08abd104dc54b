# Scale-out benchmark: curation in one process vs on 2 Dask workers, interleaved pairs (50,000 rows at full size).
# Needs only the project venv. `make bench-scale QUICK=1` runs 800 rows in a few minutes; ROWS=20000 a smaller
# full run; EXTRA=1 adds a 1-worker case and an s3:// data root (moto on loopback).
.PHONY: bench-scale
bench-scale:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) ROWS=$(ROWS) EXTRA=$(EXTRA) $(BIN)/python bench/scale.py
