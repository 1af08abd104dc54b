"""Links and images a site repeats on every page: followed and requested once, their context worked out once."""

from __future__ import annotations

from pathlib import Path

from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from crawlers.config import CrawlConfig, CrawlJob
from crawlers.items import PageItem
from crawlers.spiders.site import PAGE_SLOT, SiteSpider

SITE = "http://site.test"


def _page(name: str, images: list[str]) -> HtmlResponse:
    figures = "".join(
        f'<figure><img src="/img/{image}" alt="alt {image}"><figcaption>caption {image}</figcaption></figure>'
        for image in images
    )
    html = (
        f"<html><head><title>{name}</title></head><body><nav><a href='/a.html'>a</a> <a href='/b.html'>b</a></nav>"
        f"<article><p>before {name}</p>{figures}<p>after {name}</p></article></body></html>"
    )
    url = f"{SITE}/{name}.html"
    return HtmlResponse(url, body=html.encode(), encoding="utf-8", request=Request(url, meta={PAGE_SLOT: True}))


def _spider(tmp_path: Path, incremental: bool) -> SiteSpider:
    config = CrawlConfig(start_url=f"{SITE}/", incremental=incremental)
    state = str(tmp_path / "state.sqlite") if incremental else None
    job = CrawlJob(config=config, crawl_run="r", output_dir=str(tmp_path / "raw"), state_path=state)
    settings = {CrawlJob.SETTING: job.to_setting(), "CLOSESPIDER_PAGECOUNT": 1000}  # get_crawler's are frozen
    return SiteSpider.from_crawler(get_crawler(SiteSpider, settings_dict=settings))


def _parse(spider: SiteSpider, response: HtmlResponse) -> tuple[list[Request], list[Request], PageItem]:
    out = list(spider.parse(response))
    requests = [r for r in out if isinstance(r, Request)]
    (item,) = [i for i in out if isinstance(i, PageItem)]
    images = [r for r in requests if r.callback == spider.parse_image]
    return images, [r for r in requests if r not in images], item


def test_a_repeated_image_and_link_are_requested_once_with_the_first_pages_context(tmp_path: Path) -> None:
    spider = _spider(tmp_path, incremental=False)
    images, links, _ = _parse(spider, _page("one", ["x.jpg"]))
    assert [r.url for r in images] == [f"{SITE}/img/x.jpg"]
    assert images[0].cb_kwargs == {
        "page_url": f"{SITE}/one.html",
        "alt_text": "alt x.jpg",
        "caption": "caption x.jpg",
        "context_text": "before one after one",
    }
    assert sorted(r.url for r in links) == [f"{SITE}/a.html", f"{SITE}/b.html"]
    images, links, item = _parse(spider, _page("two", ["x.jpg", "y.jpg"]))
    assert [r.url for r in images] == [f"{SITE}/img/y.jpg"]  # x is requested already
    assert images[0].cb_kwargs["context_text"] == "before two after two"
    assert links == []  # a and b are followed already
    assert [image[0] for image in item.images] == [f"{SITE}/img/y.jpg"]


def test_the_incremental_state_still_records_every_image_a_page_shows(tmp_path: Path) -> None:
    spider = _spider(tmp_path, incremental=True)
    _parse(spider, _page("one", ["x.jpg"]))
    images, _, item = _parse(spider, _page("two", ["x.jpg", "y.jpg"]))
    assert [r.url for r in images] == [f"{SITE}/img/y.jpg"]  # fetched once all the same
    # what a revalidated page (304) requests again next time: both images, with this page's context
    assert item.images == [
        [f"{SITE}/img/x.jpg", "alt x.jpg", "caption x.jpg", "before two after two"],
        [f"{SITE}/img/y.jpg", "alt y.jpg", "caption y.jpg", "before two after two"],
    ]
    spider.crawl_state.close()
