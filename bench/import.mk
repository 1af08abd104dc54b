# Import benchmark: `flywheel import` of a generated 10,000-image ImageFolder tree (import + curate + scrub) vs a
# plain loop that only reads, hashes and decodes the same files (bench/import.py). `make bench-import QUICK=1`
# uses 1,000 images. Needs only the project venv.
.PHONY: bench-import
bench-import:
	@test -x .venv/bin/python || $(MAKE) .venv/.installed
	QUICK=$(QUICK) .venv/bin/python bench/import.py
