"""The Flywheel spiders (Scrapy finds them through SPIDER_MODULES)."""
