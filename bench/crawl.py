"""Crawl benchmark: Flywheel's `site` spider (extraction on) against a bare Scrapy spider that only follows links.

Both crawl the same generated loopback site in one run, with the same politeness and concurrency settings
(crawlers.settings). Then Flywheel crawls the same pages where a third of the links 404, slowly (a CMS renders
its not-found page; the articles are static), as shipped and with Scrapy's own AutoThrottle. Prints a table and
ends with one line `bench crawl: ... ratio=<value> ratio_404=<value>`: ratio is Flywheel's pages/s over bare
Scrapy's; ratio_404 Flywheel's responses/s on the broken-link site (pages and 404s alike) over its responses/s on the
clean one, the pace the issue saw collapse; ratio_404_pages the same for HTML pages alone, beside
bound_404_pages, what ratio_404_pages is at an equal pace of requests (the clean site's responses over the 404
site's: the 404 site asks for half as many URLs again). cpu_ratio is bare Scrapy's CPU time per page over
Flywheel's (its extraction workers included). The ratios are medians over `CRAWL_ROUNDS` (default 3) rounds of
bare, Flywheel and the 404 site run back to back. `QUICK=1` crawls a smaller site.

Run: `make bench-crawl [QUICK=1]` or `.venv/bin/python bench/crawl.py`.
"""

from __future__ import annotations

import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import scrapy

ROOT = Path(__file__).resolve().parents[1]
FULL_PAGES = 3000
QUICK_PAGES = 600
LINKS_PER_PAGE = 6
IMAGES_PER_PAGE = 2
UNIQUE_IMAGES = 300
# The broken-link site: 2 of each page's 6 links go to pages that do not exist (half as many as there are pages,
# so a third of the responses are 404s), each answered after NOT_FOUND_LATENCY_S.
BROKEN_LINKS_PER_PAGE = 2
NOT_FOUND_LATENCY_S = 0.05
# Scrapy's AutoThrottle in place of crawlers.politeness.CrawlDelayThrottle: the 404 case as it was.
STOCK_THROTTLE = {
    "EXTENSIONS": json.dumps(
        {"crawlers.politeness.CrawlDelayThrottle": None, "scrapy.extensions.throttle.AutoThrottle": 0}
    )
}
# Settings both spiders share, copied from crawlers.settings so the comparison is like for like.
SHARED_SETTINGS = (
    "USER_AGENT",
    "ROBOTSTXT_OBEY",
    "DOWNLOAD_DELAY",
    "AUTOTHROTTLE_ENABLED",
    "AUTOTHROTTLE_START_DELAY",
    "AUTOTHROTTLE_MAX_DELAY",
    "AUTOTHROTTLE_TARGET_CONCURRENCY",
    "CONCURRENT_REQUESTS",
    "CONCURRENT_REQUESTS_PER_DOMAIN",
    "CONCURRENT_ITEMS",
    "DOWNLOAD_TIMEOUT",
    "COOKIES_ENABLED",
    "TELNETCONSOLE_ENABLED",
    "LOG_LEVEL",
)
_WORDS = [
    "amber",
    "basin",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "island",
    "juniper",
    "kestrel",
    "lagoon",
    "meadow",
    "nectar",
    "orchid",
    "prairie",
    "quarry",
    "ridge",
    "summit",
    "tundra",
    "upland",
    "valley",
    "willow",
    "yarrow",
    "zephyr",
    "alder",
    "birch",
    "coral",
    "dune",
    "estuary",
    "fern",
    "glacier",
    "heath",
]


class BareSpider(scrapy.Spider):
    """The baseline: follow every link, parse nothing else, store nothing."""

    name = "bare"

    def __init__(self, start_url: str = "", result: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = start_url
        self.result = result
        self.pages = 0

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response: scrapy.http.Response) -> Iterator[scrapy.Request]:
        self.pages += 1
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)

    def closed(self, reason: str) -> None:
        start = self.crawler.stats.get_value("start_time")
        elapsed = (datetime.now(UTC) - start).total_seconds()
        Path(self.result).write_text(json.dumps({"pages": self.pages, "elapsed_s": elapsed, "reason": reason}))


def _slug(i: int) -> str:
    """A digit-free, unique path for page i: real sites' slugs, one URL family per section."""
    n = len(_WORDS)
    return f"/{_WORDS[i % n]}/{_WORDS[(i // n) % n]}-{_WORDS[(i // (n * n)) % n]}.html"


def build_site(site: Path, pages: int, broken: bool = False) -> dict[str, int]:
    """Write `pages` linked HTML pages (a few paragraphs, LINKS_PER_PAGE links, IMAGES_PER_PAGE figures each).

    `broken`: the same pages, but BROKEN_LINKS_PER_PAGE of each page's links point at pages that do not exist.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (site / "img").mkdir(parents=True, exist_ok=True)
    for k in range(UNIQUE_IMAGES):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
        (site / "img" / f"{_WORDS[k % len(_WORDS)]}-{_WORDS[k // len(_WORDS)]}.jpg").write_bytes(buf.getvalue())
    images = sorted(p.name for p in (site / "img").iterdir())
    slugs = [_slug(i) for i in range(pages)]
    for i, slug in enumerate(slugs):
        # the next page is always linked, so every page is reachable from the index
        links = [slugs[(i + 1) % pages]] + [slugs[int(j)] for j in rng.integers(0, pages, LINKS_PER_PAGE - 1)]
        if broken:  # same section shapes as real pages, never written
            missing = rng.integers(pages, pages + pages // 2, BROKEN_LINKS_PER_PAGE)
            links[-BROKEN_LINKS_PER_PAGE:] = [_slug(int(k)) for k in missing]
        words = rng.choice(_WORDS, size=(4, 60))
        paragraphs = "".join(f"<p>{' '.join(row).capitalize()}.</p>" for row in words)
        figures = "".join(
            f'<figure><img src="/img/{images[int(j)]}" alt="picture {int(j)}"><figcaption>Figure {int(j)}'
            "</figcaption></figure>"
            for j in rng.integers(0, len(images), IMAGES_PER_PAGE)
        )
        nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        html = (
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Page {i}</title></head><body>"
            f"<nav><ul>{nav}</ul></nav><main><article><h1>Page {i}</h1>{paragraphs}{figures}</article></main>"
            "<footer><p>Generated for the crawl benchmark.</p></footer></body></html>"
        )
        path = site / slug.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)
    index = "".join(f'<a href="{s}">{s}</a> ' for s in slugs[:: max(1, pages // 50)])
    (site / "index.html").write_text(
        f"<!DOCTYPE html><html><head><title>Index</title></head><body>{index}</body></html>"
    )
    (site / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    return {"pages": pages + 1, "images": len(images)}


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs (the crawl's extraction workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _shared_settings() -> dict[str, str]:
    import crawlers.settings as project

    return {key: str(getattr(project, key)) for key in SHARED_SETTINGS}


def run_bare(url: str, work: Path, max_pages: int) -> dict[str, Any]:
    result = work / "bare.json"
    cmd = [sys.executable, "-m", "scrapy", "runspider", __file__, "-a", f"start_url={url}", "-a", f"result={result}"]
    for key, value in {**_shared_settings(), "CLOSESPIDER_PAGECOUNT": str(max_pages * 2)}.items():
        cmd += ["-s", f"{key}={value}"]
    env = {k: v for k, v in os.environ.items() if k != "SCRAPY_SETTINGS_MODULE"}
    started, cpu = time.perf_counter(), _children_cpu_s()
    with (work / "bare.log").open("wb") as log:
        subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=900)
    wall = time.perf_counter() - started
    data = json.loads(result.read_text())
    return {
        "pages": data["pages"],
        "images": 0,
        "responses": data["pages"] + 1,  # and robots.txt
        "elapsed_s": data["elapsed_s"],
        "wall_s": wall,
        "cpu_s": _children_cpu_s() - cpu,
    }


def slow_not_found_server(site_dir: Path) -> Any:
    """A SiteServer whose 404s take NOT_FOUND_LATENCY_S: a CMS renders its not-found page, the articles are files."""
    import functools

    from pipelines.demo.site_server import SiteServer, _Handler

    class Handler(_Handler):
        def send_error(self, code: int, *args: Any, **kwargs: Any) -> None:
            if code == 404:
                time.sleep(NOT_FOUND_LATENCY_S)  # in this request's own thread (ThreadingHTTPServer)
            super().send_error(code, *args, **kwargs)

    class Server(SiteServer):
        def start(self) -> SiteServer:
            super().start()
            self._server.RequestHandlerClass = functools.partial(Handler, directory=str(self.site_dir))
            return self

    return Server(site_dir)


def run_flywheel(
    url: str, work: Path, max_pages: int, name: str, fetch_images: bool, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    from crawlers.config import CrawlConfig
    from crawlers.run import crawl

    config = CrawlConfig(
        start_url=url,
        source="bench",
        max_pages=max_pages,
        timeout_s=900,
        allowed_private_hosts=["127.0.0.1"],
        fetch_images=fetch_images,
    )
    started, cpu = time.perf_counter(), _children_cpu_s()
    report = crawl(config, work / name, crawl_run=name, settings={**_shared_settings(), **(settings or {})})
    wall = time.perf_counter() - started
    return {
        "responses": report["responses"],
        "throttle": report["throttle"],
        "not_found": report["status_codes"].get("404", 0),
        "pages": report["pages"],
        "images": report["images"],
        "elapsed_s": report["elapsed_s"],
        "wall_s": wall,
        "cpu_s": _children_cpu_s() - cpu,
        "requests": report["requests"],
    }


def profile_stages(site: Path, sample: int = 200) -> dict[str, float]:
    """In-process cost per page (ms) of what Flywheel adds: extraction, link canonicalisation, record building."""
    import pyarrow as pa

    from corpus.schema import RECORD_SCHEMA
    from crawlers.items import PageItem
    from crawlers.page_text import extract_text
    from crawlers.pipelines import item_to_record
    from crawlers.urls import canonicalize_url

    pages = sorted(p for p in site.rglob("*.html") if p.name != "index.html")[:sample]
    bodies = [(f"http://127.0.0.1/{p.relative_to(site)}", p.read_bytes()) for p in pages]
    # warm-up: trafilatura's and pyarrow's first calls pay one-time imports (pyarrow loads pandas, ~0.5 s)
    extract_text(bodies[0][1].decode(), bodies[0][0])
    pa.array(["warm"], type=pa.string())
    t0 = time.perf_counter()
    texts = [extract_text(body.decode(), url) for url, body in bodies]
    t1 = time.perf_counter()
    selector_links = [scrapy.Selector(text=body.decode()).css("a::attr(href)").getall() for _, body in bodies]
    t2 = time.perf_counter()
    for links in selector_links:
        for href in links:
            canonicalize_url("http://127.0.0.1:8000" + href)
    t3 = time.perf_counter()
    now = datetime.now(UTC)
    rows = [
        item_to_record(PageItem(url, body, "t", text, now), source="b", crawl_run="b")
        for (url, body), text in zip(bodies, texts, strict=True)
    ]
    pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    t4 = time.perf_counter()
    n = len(bodies)
    return {
        "extract_ms": 1000 * (t1 - t0) / n,
        "links_parse_ms": 1000 * (t2 - t1) / n,
        "canonicalise_ms": 1000 * (t3 - t2) / n,
        "records_ms": 1000 * (t4 - t3) / n,
    }


def run_round(index: int, url: str, broken_url: str, work: Path, budget: int) -> dict[str, Any]:
    """A bare / Flywheel / 404-site triple, back to back; odd rounds run backwards, so no side always goes first."""
    order = ["bare", "full", "broken"]
    if index % 2:
        order.reverse()
    runs: dict[str, Any] = {"load": os.getloadavg()[0]}
    for name in order:
        if name == "bare":
            runs[name] = run_bare(url, work, budget)
        elif name == "full":
            runs[name] = run_flywheel(url, work, budget, f"flywheel-full-{index}", fetch_images=True)
        else:
            runs[name] = run_flywheel(broken_url, work, budget, f"flywheel-404-{index}", fetch_images=True)
    runs["load_end"] = os.getloadavg()[0]
    return runs


def rate(run: dict[str, Any], key: str) -> float:
    return run[key] / run["elapsed_s"] if run["elapsed_s"] else 0.0


def round_ratios(runs: dict[str, Any]) -> dict[str, float]:
    """A round's ratios: Flywheel over bare pages/s, and the 404 site over the clean one (responses/s and pages/s)."""
    bare, full, broken = runs["bare"], runs["full"], runs["broken"]
    return {
        "ratio": rate(full, "pages") / rate(bare, "pages"),
        # 1 when a 404 costs the crawl what any other response costs
        "ratio_404": rate(broken, "responses") / rate(full, "responses"),
        "ratio_404_pages": rate(broken, "pages") / rate(full, "pages"),
        # pages/s on the 404 site over the clean site's, were both crawled at the same responses/s
        "bound_404_pages": full["responses"] / broken["responses"],
        "cpu_ratio": (bare["cpu_s"] / bare["pages"]) / (full["cpu_s"] / full["pages"]),
    }


def print_runs(runs: list[tuple[str, dict[str, Any]]]) -> None:
    print(
        f"{'spider':<44}{'pages':>7}{'images':>8}{'404s':>6}{'elapsed s':>11}{'wall s':>9}{'pages/s':>10}"
        f"{'images/s':>10}{'responses/s':>13}{'CPU ms/page':>13}"
    )
    for name, run in runs:
        print(
            f"{name:<44}{run['pages']:>7}{run['images']:>8}{run.get('not_found', 0):>6}{run['elapsed_s']:>11.2f}"
            f"{run['wall_s']:>9.2f}{rate(run, 'pages'):>10.1f}{rate(run, 'images'):>10.1f}"
            f"{rate(run, 'responses'):>13.1f}{1000 * run['cpu_s'] / run['pages']:>13.2f}"
        )
    print(
        "CPU ms/page: user + system time of the crawl process and its extraction workers (getrusage), process start"
        " included, per page; a shared host's load moves it far less than it moves pages/s"
    )


def main() -> None:
    quick = os.environ.get("QUICK", "0") not in ("", "0", "false", "no")
    pages = QUICK_PAGES if quick else FULL_PAGES
    rounds = int(os.environ.get("CRAWL_ROUNDS", "3"))
    sys.path.insert(0, str(ROOT))
    from pipelines.demo.site_server import SiteServer

    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        work = Path(tmp)
        size = build_site(work / "site", pages)
        broken_size = build_site(work / "broken", pages, broken=True)
        # max_pages far above the site (as the crawl had: 2,000 for 481 pages): with a budget within the
        # broken links' count of the site's size, new links wait in the spider's backlog for 404s to free page
        # slots, and the crawl of the 404 site ends one 404 at a time (measured: 54 pages/s at budget 611, 119 at
        # 2,000, on the 600-page site). Every crawl still ends when the site is exhausted.
        budget = 2 * (size["pages"] + broken_size["pages"])
        # The runs behind a ratio run back to back, in rounds, so that a shared host's load moves both alike; the
        # closing line has each ratio's median over the rounds.
        with SiteServer(work / "site") as server, slow_not_found_server(work / "broken") as broken_server:
            url, broken_url = server.url + "/index.html", broken_server.url + "/index.html"
            results = [run_round(i, url, broken_url, work, budget) for i in range(rounds)]
            text_only = run_flywheel(url, work, budget, "flywheel-text", fetch_images=False)
            stock = run_flywheel(
                broken_url, work, budget, "flywheel-404-stock", fetch_images=True, settings=STOCK_THROTTLE
            )
        stages = profile_stages(work / "site")

    print(f"site: {size['pages']} pages, {size['images']} unique images, {IMAGES_PER_PAGE} figures/page (loopback)")
    print(
        f"404 site: the same {broken_size['pages']} pages, {BROKEN_LINKS_PER_PAGE} of {LINKS_PER_PAGE} links per page"
        f" to {pages // 2} missing pages, each 404 after {NOT_FOUND_LATENCY_S * 1000:.0f} ms"
    )
    table = []
    for i, runs in enumerate(results):
        table += [
            (f"round {i + 1}: bare Scrapy (links only)", runs["bare"]),
            (f"round {i + 1}: Flywheel, pages+images", runs["full"]),
            (f"round {i + 1}: Flywheel, 404 site", runs["broken"]),
        ]
    print_runs([*table, ("Flywheel, text only", text_only), ("Flywheel, 404 site, Scrapy AutoThrottle", stock)])
    ratios = [round_ratios(runs) for runs in results]
    for i, (runs, r) in enumerate(zip(results, ratios, strict=True)):
        print(
            f"round {i + 1} (load {runs['load']:.1f} -> {runs['load_end']:.1f}): "
            + " ".join(f"{k}={v:.3f}" for k, v in r.items())
        )
    full, broken = results[-1]["full"], results[-1]["broken"]
    for name, run in (("404 site", broken), ("clean site", full)):
        throttle = run["throttle"]
        print(
            f"throttle, {name} (last round): raised by {throttle['raised']}, backoffs {throttle['backoff']}, "
            f"max delay {throttle['max_delay_ms']} ms, mean {throttle['mean_delay_ms']} ms (a request every"
            f" {1000 / rate(run, 'responses'):.1f} ms), last {throttle['delay_ms']} ms"
        )
    print("Flywheel's added cost per page, in-process (ms): " + ", ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    median = {k: statistics.median(r[k] for r in ratios) for k in ratios[0]}
    bare_rate = statistics.median(rate(runs["bare"], "pages") for runs in results)
    full_rate = statistics.median(rate(runs["full"], "pages") for runs in results)
    print(
        f"bench crawl: rounds={rounds} bare_pages_per_s={bare_rate:.1f} flywheel_pages_per_s={full_rate:.1f} "
        f"flywheel_text_pages_per_s={rate(text_only, 'pages'):.1f} "
        f"ratio_text_only={rate(text_only, 'pages') / bare_rate:.3f} "
        f"ratio_404_stock_throttle={rate(stock, 'responses') / rate(full, 'responses'):.3f} "
        + " ".join(
            f"{k}={median[k]:.3f}" for k in ("cpu_ratio", "ratio_404_pages", "bound_404_pages", "ratio", "ratio_404")
        )
    )


if __name__ == "__main__":
    main()
