# Import benchmark: `flywheel import` of a generated 10,000-image ImageFolder tree (import + curate + scrub) vs a
# plain loop that only reads, hashes and decodes the same files (bench/import.py). `make bench-import QUICK=1`
# uses 1,000 images. `make bench-import MEMORY=1`: peak RSS at 2,000 / 10,000 / 50,000 tiny PNGs and its growth
# per 1,000 rows (QUICK=1: 2,000 / 4,000 / 8,000). Needs only the project venv.
.PHONY: bench-import
bench-import:
	@test -x .venv/bin/python || $(MAKE) .venv/.installed
	QUICK=$(QUICK) MEMORY=$(MEMORY) .venv/bin/python bench/import.py
