# Box aggregation benchmark: fused boxes of simulated annotators vs one annotator's vs ensemble-boxes' weighted box
# fusion (MIT; the peer, installed into the project venv here if missing, never by the default install).
# `make bench-boxes QUICK=1` runs the small size (seconds). Figures: bench/BOXES.md.
.PHONY: bench-boxes
bench-boxes:
	test -x $(BIN)/python || $(MAKE) venv
	$(BIN)/python -c "import ensemble_boxes" 2>/dev/null || $(BIN)/pip install -q --disable-pip-version-check ensemble-boxes==1.0.9
	QUICK=$(QUICK) PYTHONPATH=$(CURDIR) $(BIN)/python bench/boxes.py
