"""End to end: nothing Flywheel pushes to Label Studio or writes to a release holds a planted PII value."""

from __future__ import annotations

import io
import json

import pyarrow as pa
from curation_records import build_table, encode, image_row, smooth_image, text_row
from pii_values import FOUND, IN_CONTEXT, NATIONAL
from PIL import ExifTags, Image
from test_privacy import gps_jpeg

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.stages import run_stage
from corpus.store import DataRoot
from curation.curate import CURATE
from curation.curate_config import CurateConfig
from curation.scrub import SCRUB, ScrubConfig
from labeling.studio_tasks import build_tasks, export_media

PERSON = "Jane Doe"
# In URLs: a path segment, query values named and unnamed, a fragment token, a reset token, credentials.
URL_VALUES = ["lena.berg@example.net", "4155550198", "Kx9mQ2vL7pR4sT8wZ3yB6nJ", "hunter2pass", "reset9fK2mQ7xL4pR8sT1"]
PAGE_URL = f"http://127.0.0.1/account/{URL_VALUES[0]}?tel={URL_VALUES[1]}&page=2#access_token={URL_VALUES[2]}"
IMAGE_URL = f"http://admin:{URL_VALUES[3]}@127.0.0.1/img/share/{URL_VALUES[4]}/gps.jpg"
PLANTED = (
    [value for _, value in FOUND]
    + [value for _, _, value in IN_CONTEXT]
    + [value for value, _ in NATIONAL]
    + [PERSON, *URL_VALUES]
)


def planted_crawl() -> pa.Table:
    body = " ".join(f"Item {k}: {value}." for k, (_, value) in enumerate(FOUND)) + f" Signed, Dr. {PERSON}."
    body += " " + " ".join(f"{before} {value}." for _, before, value in IN_CONTEXT)
    body += f" Account page: {PAGE_URL} and picture {IMAGE_URL} ."
    pii_text = ", ".join(value for _, value in FOUND)
    image = image_row(gps_jpeg(), IMAGE_URL, 1, alt_text=pii_text, caption=pii_text)
    image["page_url"] = PAGE_URL
    rows = [
        text_row(body, "http://127.0.0.1/contact", 0, title=f"Contact Dr. {PERSON}"),
        image,
        image_row(encode(smooth_image(31)), "http://127.0.0.1/img/plain.png", 2, caption=f"by Ms. {PERSON}"),
    ]
    # National phone formats, each on a page whose TLD names its country.
    for k, (value, region) in enumerate(NATIONAL):
        rows.append(text_row(f"Tel. {value} (office).", f"http://shop.example.{region.lower()}/k{k}", 3 + k))
    return build_table(rows)


def strings_in(table: pa.Table) -> list[str]:
    return [str(v) for name in table.column_names for v in table.column(name).to_pylist() if isinstance(v, str)]


def test_no_planted_pii_reaches_label_studio_or_a_release(tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/crawl/part-0000.parquet", planted_crawl())
    curated = run_stage(root, CURATE, CurateConfig(), ["raw/crawl"])
    scrubbed = run_stage(root, SCRUB, ScrubConfig(extra_phone_regions=["GB", "DE"]), [f"{curated['output']}/kept"])
    pool = root.read_table(f"{scrubbed['output']}/kept")
    assert pool.num_rows == 3 + len(NATIONAL)

    # What a label round sends: task JSON and the media files Label Studio serves.
    media = export_media(root, pool)
    tasks = build_tasks(pool, media)
    pushed = json.dumps(tasks) + json.dumps(scrubbed)
    images = {path: root.read_bytes(path) for path in media.values()}

    # What a release writes: every file under releases/.
    labeled = pool.set_column(pool.schema.get_field_index("label"), "label", pa.array(["cat"] * pool.num_rows))
    build_release(root, "demo", labeled, ReleaseConfig(train=1.0, val=0.0, test=0.0))
    released = [p for p in root.fs.find(root.path("releases"))]
    assert any(p.endswith(".parquet") for p in released)

    texts = [pushed, *strings_in(pool)]
    for path in released:
        rel = path[len(root.base) + 1 :]
        if path.endswith(".parquet"):
            texts += strings_in(root.read_table(rel, schema=None))
        else:
            texts.append(root.read_bytes(rel).decode("utf-8", errors="replace"))
    for value in PLANTED:
        assert not [t for t in texts if value in t], f"planted {value!r} leaked"
    for data in images.values():
        image = Image.open(io.BytesIO(data))
        assert ExifTags.IFD.GPSInfo not in image.getexif() and len(image.getexif()) == 0
    # Counts are recorded per entity, never the values.
    counts = dict(
        pool.filter(pa.compute.equal(pool["url"], "http://127.0.0.1/contact")).column("pii_counts")[0].as_py()
    )
    assert {entity for entity, _ in FOUND} | {"person"} <= set(counts)
