# Input-pipeline benchmark: Flywheel's release loader vs a plain loop over the same albumentations transforms.
# Needs only the project venv. `make bench-loader QUICK=1` runs a smaller size in under two minutes.
.PHONY: bench-loader
bench-loader:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) $(BIN)/python bench/loader.py
