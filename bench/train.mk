# Training-loop benchmark: Flywheel's fit loop vs a plain torch loop, same model, data and transforms.
# Needs only the project venv. `make bench-train QUICK=1` runs a small size (a few minutes on 2 CPU cores).
.PHONY: bench-train
bench-train:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) NO_ALBUMENTATIONS_UPDATE=1 $(BIN)/python bench/train.py

# Copy-detection benchmark: pHash vs curation.copies (ORB + RANSAC) on photo tiles with planted transforms (~2 min).
.PHONY: bench-semantic-dedup
bench-semantic-dedup:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) NO_ALBUMENTATIONS_UPDATE=1 $(BIN)/python bench/semantic_dedup.py
