# Labeling benchmarks (bench/LABELING.md): `make bench-label-efficiency|bench-aggregation|bench-multilabel|bench-sync
# [QUICK=1]`.
# They run in the project venv; bench-sync also needs the Label Studio server venv and starts its own server.

.PHONY: bench-label-efficiency bench-aggregation bench-multilabel bench-sync

bench-label-efficiency: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/label_efficiency.py

bench-aggregation: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/aggregation.py

bench-multilabel: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/multilabel_aggregation.py

bench-sync: venv
	QUICK=$(QUICK) $(BIN)/python bench/sync.py
