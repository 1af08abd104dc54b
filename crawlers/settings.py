"""Scrapy settings of the Flywheel crawl project (SCRAPY_SETTINGS_MODULE=crawlers.settings)."""

BOT_NAME = "flywheel"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"

# Identify ourselves and play by the site's rules.
USER_AGENT = "FlywheelBot/0.1 (+https://github.com/flywheel)"
ROBOTSTXT_OBEY = True

# The demo crawls a loopback site: no fixed delay, but AutoThrottle stays on so a real site that slows
# down gets backed off. Start delay 0.1 s (Scrapy's default is 5 s, meant for remote hosts); on
# loopback latencies of a few ms the throttle converges to no delay within a handful of responses.
DOWNLOAD_DELAY = 0
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.1
AUTOTHROTTLE_MAX_DELAY = 10.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 4.0
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8  # Scrapy's default
DOWNLOAD_TIMEOUT = 30

# Cap bodies: 32 MiB is far above any web photo or page (Scrapy's default cap is 1 GiB), so only
# pathological responses are cut; they are logged and counted, not stored.
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024
DOWNLOAD_WARNSIZE = 8 * 1024 * 1024

COOKIES_ENABLED = False
# Both consoles open a port that runs code inside the crawler; a batch crawl needs neither.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
LOG_LEVEL = "INFO"

# CLOSESPIDER_PAGECOUNT counts every response (pages, images, robots.txt); the spider sets it from
# `max_pages` as a backstop, and enforces `max_pages` on HTML pages itself.
CLOSESPIDER_PAGECOUNT = 0

ITEM_PIPELINES = {"crawlers.pipelines.ParquetShardPipeline": 300}

# Where the pipeline writes shards, and what it stamps on every record (set with -s by crawlers.run).
FLYWHEEL_OUTPUT_DIR = None
FLYWHEEL_CRAWL_RUN = "adhoc"
FLYWHEEL_SOURCE = "web"
FLYWHEEL_SHARD_ROWS = 500
