# Text model benchmark (README "Text classification"): `make bench-text-model [QUICK=1]`.

.PHONY: bench-text-model

bench-text-model: $(VENV)/.installed
	QUICK=$(QUICK) $(BIN)/python bench/text_model.py
