"""Scrapy settings of the Flywheel crawl project (SCRAPY_SETTINGS_MODULE=crawlers.settings)."""

BOT_NAME = "flywheel"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"

# Identify ourselves and play by the site's rules.
USER_AGENT = "FlywheelBot/0.1 (+https://github.com/flywheel)"
ROBOTSTXT_OBEY = True
# robots.txt is read up to 500 KiB, the least RFC 9309 §2.5 lets a parser handle; the rest is ignored, as it allows.
ROBOTSTXT_PARSER = "crawlers.politeness.CappedRobotParser"
FLYWHEEL_ROBOTSTXT_MAXSIZE = 500 * 1024

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
# Outputs of one callback processed at once. Scrapy starts this many worker tasks for every response, whatever it
# yields (Scraper.handle_spider_output_async); 100, its default, is ~100 idle tasks a page for a page's ~10 links
# and images and one item (cProfile of the crawl child: 230,000 queue gets for 1,000 pages).
CONCURRENT_ITEMS = 16
# Scrapy's check that a generator callback has no `return value` re-reads and parses the callback's source file
# whenever its cache (keyed by the bound method) misses: ~0.7 ms a response, 4.5 % of the crawl child's time in
# cProfile. A lint for spider authors; this project's callbacks are fixed and tested.
WARN_ON_GENERATOR_RETURN_VALUE = False
DOWNLOAD_TIMEOUT = 30

# Cap bodies: 32 MiB is far above any web photo or page (Scrapy's default cap is 1 GiB), so only
# pathological responses are cut; they are logged and counted, not stored.
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024
DOWNLOAD_WARNSIZE = 8 * 1024 * 1024

# Endless redirect chains stop after 5 hops: the limit RFC 2068 §10.3 recommended (RFC 9110 §15.4 cites it);
# Scrapy's default is Firefox's 20.
REDIRECT_MAX_TIMES = 5
# Per-kind body caps (Request.meta download_maxsize): HTML stops at 15 MiB, the cap Googlebot documents for
# HTML files (Google Search Central, "Googlebot"); images at DOWNLOAD_MAXSIZE. Scrapy's HttpCompressionMiddleware
# applies the same cap to the decompressed body, which is what stops a gzip bomb.
FLYWHEEL_PAGE_MAXSIZE = 15 * 1024 * 1024
FLYWHEEL_IMAGE_MAXSIZE = DOWNLOAD_MAXSIZE
# Processes that run trafilatura beside the crawl (0 = in the crawl process), for the item pipeline's extraction
# stage (crawlers.extraction). On loopback the crawl is CPU bound and extraction is its largest added cost
# (bench/CRAWL.md); one worker moves it off the reactor's core. More workers pay only where cores are free.
FLYWHEEL_EXTRACT_WORKERS = 1
# Pages per extraction batch, or what is queued after this wait (crawlers.extraction, which also caps a batch at
# 1 MiB of HTML): a batch is one pipe write and one read for the reactor. 16 pages is ~30-50 ms of trafilatura
# here; the 20 ms wait delays a page's record, never the crawl (the spider never waits on extraction).
FLYWHEEL_EXTRACT_BATCH_PAGES = 16
FLYWHEEL_EXTRACT_BATCH_WAIT_S = 0.02
# Sitemaps (and feeds) fetched per crawl; each may list 50,000 URLs (sitemaps.org), far above max_pages.
FLYWHEEL_MAX_SITEMAPS = 50

# SSRF guard (crawlers.netguard): only public addresses, unless the crawl's config allows an origin
# (CrawlConfig.allowed_private_hosts, e.g. http://127.0.0.1:8765 for the loopback demo site) or the operator
# allows a network here (any host and port in it; metadata addresses never).
FLYWHEEL_ALLOWED_PRIVATE_NETWORKS: list[str] = []
# After OffsiteMiddleware (50), before RobotsTxtMiddleware (100), which would fetch robots.txt from the host.
DOWNLOADER_MIDDLEWARES = {"crawlers.netguard.SsrfGuardMiddleware": 60}
TWISTED_DNS_RESOLVER = "crawlers.netguard.GuardedResolver"
# AutoThrottle, with robots.txt Crawl-delay as a floor per host, capped at 60 s (Scrapy's AUTOTHROTTLE_MAX_DELAY
# default) so a hostile robots.txt cannot stall a crawl.
EXTENSIONS = {"scrapy.extensions.throttle.AutoThrottle": None, "crawlers.politeness.CrawlDelayThrottle": 0}
FLYWHEEL_MAX_CRAWL_DELAY = 60.0

COOKIES_ENABLED = False
# Both consoles open a port that runs code inside the crawler; a batch crawl needs neither.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
LOG_LEVEL = "INFO"

# CLOSESPIDER_PAGECOUNT counts every response (pages, images, robots.txt); the spider sets it from
# `max_pages` as a backstop, and enforces `max_pages` on HTML pages itself.
CLOSESPIDER_PAGECOUNT = 0

# Scraped items are logged by URL only: the default dumps whole pages (and whatever they contain) at DEBUG.
LOG_FORMATTER = "crawlers.report.UrlOnlyLogFormatter"

# Page text first (in the extraction workers), then the shards.
ITEM_PIPELINES = {"crawlers.extraction.TextExtractionPipeline": 200, "crawlers.pipelines.ParquetShardPipeline": 300}

# What to crawl, where the shards go and what every record is stamped with: a crawlers.config.CrawlJob as
# JSON, set with -s by crawlers.run (per-crawl options live in CrawlConfig, project-wide ones here).
FLYWHEEL_CRAWL_JOB = None
FLYWHEEL_SHARD_ROWS = 500
# Seconds between progress updates to the parent (crawlers.progress); 0 = none. 2 s: a line a human can follow
# on a long crawl, and a few hundred-byte writes a minute on the reactor.
FLYWHEEL_PROGRESS_INTERVAL_S = 2.0
