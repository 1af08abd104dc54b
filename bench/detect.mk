# Detection label efficiency: one round chosen by the detector's box uncertainty + diversity vs random (mAP).
# Needs only the project venv (CPU torch). `make bench-detect-efficiency QUICK=1`: 2 seeds, a few minutes on 2 cores.
.PHONY: bench-detect-efficiency
bench-detect-efficiency:
	test -x $(BIN)/python || $(MAKE) venv
	QUICK=$(QUICK) NO_ALBUMENTATIONS_UPDATE=1 $(BIN)/python bench/detect_efficiency.py
