# Export benchmark: Flywheel's webdataset export vs plain tarfile writing the same members (project venv only).
# `make bench-export QUICK=1` runs the small size.
.PHONY: bench-export
bench-export:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) $(BIN)/python bench/export.py
