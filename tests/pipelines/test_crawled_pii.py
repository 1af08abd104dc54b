"""The privacy guarantee on a crawled site: PII planted in every text field, URL, image pixel and image metadata
of a loopback site is crawled, curated, scrubbed, pushed to a real Label Studio and released, then looked for in
every task, every file Label Studio serves for them, every release file and the pool."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from urllib.parse import unquote

import cv2
import httpx
import numpy as np
import pytest
from annotator_http import label_until_empty, sign_up
from pii_site import CONFIGURED_REGIONS, PiiSiteServer, build_site, drawn_images
from PIL import Image

from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.config import CrawlConfig
from curation.ocr import read_words
from curation.scrub import ScrubConfig
from labeling.client import LabelStudioClient
from pipelines.config import IngestParams, LabelRoundParams, ReleaseParams
from pipelines.ingest import ingest_flow
from pipelines.release import release_flow
from pipelines.rounds import label_pull_flow, label_push_flow

pytestmark = [pytest.mark.labelstudio, pytest.mark.prefect]
LABELS = ["cat", "sign"]  # annotator_http labels every task "cat"
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")
# A value read back from pixels is a leak when this share of its box's edge energy (Laplacian variance) is left.
MAX_EDGES_LEFT = 0.25


def normalise(text: str) -> str:
    """Compatibility forms, no invisible characters, one space per run of whitespace, lower case: the crawler
    and the scrubber see text this way, so a planted value is found in whatever spelling it reached a file."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return " ".join(text.split()).lower()


def strings_of(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_of(k), *strings_of(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_of(v)]
    return []


def leaked(planted: list[str], texts: list[str]) -> list[str]:
    """The planted values found in `texts` (as written, URL-decoded, or normalised)."""
    haystack = "\n".join(normalise(t) + "\n" + normalise(unquote(t)) for t in texts)
    return [value for value in planted if normalise(value) in haystack]


def assert_no_leak(planted: list[str], texts: list[str], where: str) -> None:
    found = leaked(planted, texts)
    assert not found, f"{where}: planted {found} leaked"


def ocr_text(data: bytes) -> str:
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return " ".join(word.text for word in read_words(rgb, 2000, 30))


def readable(values: list[str], text: str) -> list[str]:
    """The values OCR `text` holds: emails without spaces, numbers by their digits."""
    squeezed, digits = normalise(text).replace(" ", ""), re.sub(r"\D", "", text)
    emails = [v for v in values if "@" in v and normalise(v).replace(" ", "") in squeezed]
    numbers = [v for v in values if "@" not in v and re.sub(r"\D", "", v) and re.sub(r"\D", "", v) in digits]
    return emails + numbers


def edges_left(before: bytes, after: bytes, box: tuple[int, int, int, int]) -> float:
    """Laplacian variance inside `box` after scrubbing over before: ~1 untouched, ~0 blurred away."""

    def energy(data: bytes) -> float:
        grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        x0, y0, x1, y1 = box
        return float(cv2.Laplacian(grey[y0:y1, x0:x1], cv2.CV_64F).var())

    return energy(after) / energy(before)


def table_strings(root: DataRoot, path: str) -> list[str]:
    table = root.read_table(path, schema=None)
    return [s for name in table.column_names if name != "image" for s in strings_of(table.column(name).to_pylist())]


def assert_clean_image(data: bytes, planted: list[str], where: str) -> None:
    """No metadata beyond pixels and ICC, and no planted value in the bytes."""
    image = Image.open(io.BytesIO(data))
    assert len(image.getexif()) == 0, f"{where}: EXIF left"
    assert not set(image.info) & {"Author", "Comment", "exif", "xmp", "XML:com.adobe.xmp"}, f"{where}: {image.info}"
    assert_no_leak(planted, [data.decode("latin-1"), data.decode("utf-8", errors="ignore")], where)


def crawl_and_scrub(root: DataRoot, site) -> dict:
    with PiiSiteServer(site) as server:
        crawl = CrawlConfig(
            start_url=server.url + "/index.html", source="pii-site", timeout_s=120, allowed_private_hosts=[server.url]
        )
        scrub = ScrubConfig(extra_phone_regions=CONFIGURED_REGIONS)
        return ingest_flow(IngestParams(crawl=crawl, scrub=scrub, data_root=root.url))


def test_no_planted_pii_of_a_crawled_site_reaches_label_studio_a_release_or_the_pool(studio) -> None:
    site = build_site()
    planted = site.planted
    root = DataRoot(str(studio.document_root))
    ingested = crawl_and_scrub(root, site)

    # Every plant reached the crawl's records (else the scan below could not fail), and none got past scrub.
    raw_texts = table_strings(root, ingested["crawl"]["output"])
    missing = [v for v in [*site.text_values, *site.url_values] if not leaked([v], raw_texts)]
    assert not missing, f"never crawled: {missing}"
    pool = root.read_table(ingested["pool"])
    drawn = {make_record_id(image.data): image for image in drawn_images()}
    assert set(drawn) <= set(pool.column("record_id").to_pylist())  # every drawn picture is in the pool
    assert_no_leak(planted, table_strings(root, ingested["pool"]) + strings_of(ingested), "the pool")

    # A round: every image of the pool becomes a task; one person labels them all.
    client = LabelStudioClient(studio.url, studio.token)
    params = LabelRoundParams(
        dataset="pii", labels=LABELS, budget=50, min_per_class=0, gold_per_round=0, annotators=1, data_root=root.url
    )
    opened = label_push_flow(params)
    images = pool.filter(pool.column("kind").to_numpy(zero_copy_only=False) == "image")
    assert opened["tasks"] == images.num_rows
    token = sign_up(client.invite_url(), "annotator@example.com", "Pii-scan-2026")
    assert len(label_until_empty(studio.url, token, opened["project_id"])) == images.num_rows

    # Label Studio: every task's JSON, and every file it serves for them.
    tasks = client.list_tasks(opened["project_id"])
    assert_no_leak(planted, [json.dumps(tasks, ensure_ascii=False), *strings_of(tasks)], "Label Studio's tasks")
    headers = {"Authorization": f"Token {studio.token}"}
    served_images = set()
    for task in tasks:
        served = httpx.get(studio.url + task["data"]["image"], headers=headers, timeout=60)
        assert served.status_code == 200
        assert_clean_image(served.content, planted, f"task {task['id']}")
        served_images.add(served.content)
        original = drawn.get(task["data"]["record_id"])
        if original is None:
            continue
        values = [value for lines in site.drawn for _, value in lines]
        before = readable(values, ocr_text(original.data))
        # Tesseract reads most of each picture (the plant works); the blur check below holds for every value.
        assert len(before) >= len(original.boxes) - 1, f"task {task['id']}: the plant is not legible: {before}"
        assert not readable(values, ocr_text(served.content)), f"task {task['id']}: drawn PII still readable"
        left = [round(edges_left(original.data, served.content, box), 2) for box in original.boxes]
        assert max(left) < MAX_EDGES_LEFT, f"task {task['id']}: a drawn value's box is not blurred: {left}"

    # A release of what was labeled: every file under its folder.
    label_pull_flow(project_title=params.project, data_root=root.url)
    manifest = release_flow(ReleaseParams(dataset="pii", data_root=root.url))
    released = [p[len(root.base) + 1 :] for p in root.fs.find(root.path(f"releases/pii/{manifest['version']}"))]
    assert {"manifest.json", "card.html"} <= {p.rsplit("/", 1)[-1] for p in released}
    texts = [json.dumps(manifest, default=str)]
    for path in released:
        if path.endswith(".parquet"):
            texts += table_strings(root, path)
            for k, data in enumerate(root.read_table(path, schema=None).column("image").to_pylist()):
                assert_clean_image(data, planted, f"{path} row {k}")
                assert data in served_images, f"{path} row {k}: not the image annotators saw (and OCR read above)"
        else:
            texts.append(root.read_bytes(path).decode("utf-8", errors="replace"))
    assert_no_leak(planted, texts, "the release")
