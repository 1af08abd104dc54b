# Crawl benchmark: Flywheel's spider vs a bare Scrapy spider on one generated loopback site (bench/crawl.py).
# `make bench-crawl QUICK=1` crawls 600 pages instead of 3,000; both sizes add the 404 case. Needs only the venv.
# CRAWL_ROUNDS: bare / Flywheel / 404-site rounds behind the medians of the closing line (default 3).
CRAWL_ROUNDS ?= 3
.PHONY: bench-crawl
bench-crawl:
	@test -x .venv/bin/python || $(MAKE) .venv/.installed
	QUICK=$(QUICK) CRAWL_ROUNDS=$(CRAWL_ROUNDS) .venv/bin/python bench/crawl.py
