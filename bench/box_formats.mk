# Box formats benchmark: Flywheel's COCO export and import vs plain loops / pycocotools on the same images
# (bench/box_formats.py). `make bench-box-formats QUICK=1` uses 300 images. Needs only the project venv (dev extras).
.PHONY: bench-box-formats
bench-box-formats:
	@test -x .venv/bin/python || $(MAKE) .venv/.installed
	QUICK=$(QUICK) .venv/bin/python bench/box_formats.py
