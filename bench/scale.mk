# Scale-out benchmark: curation on 1 vs 2 Dask workers and an s3:// data root (moto on loopback) vs local disk.
# Needs only the project venv. `make bench-scale QUICK=1` runs a small corpus in a few minutes.
.PHONY: bench-scale
bench-scale:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) $(BIN)/python bench/scale.py
