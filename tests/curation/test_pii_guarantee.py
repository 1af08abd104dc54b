"""End to end: nothing Flywheel pushes to Label Studio or writes to a release holds a planted PII value."""

from __future__ import annotations

import io
import json

import pyarrow as pa
from curation_records import build_table, encode, image_row, smooth_image, text_row
from pii_values import FOUND
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
PLANTED = [value for _, value in FOUND] + [PERSON]


def planted_crawl() -> pa.Table:
    body = " ".join(f"Item {k}: {value}." for k, (_, value) in enumerate(FOUND)) + f" Signed, Dr. {PERSON}."
    pii_text = ", ".join(value for _, value in FOUND)
    return build_table(
        [
            text_row(body, "http://127.0.0.1/contact", 0, title=f"Contact Dr. {PERSON}"),
            image_row(gps_jpeg(), "http://127.0.0.1/img/gps.jpg", 1, alt_text=pii_text, caption=pii_text),
            image_row(encode(smooth_image(31)), "http://127.0.0.1/img/plain.png", 2, caption=f"by Ms. {PERSON}"),
        ]
    )


def strings_in(table: pa.Table) -> list[str]:
    return [str(v) for name in table.column_names for v in table.column(name).to_pylist() if isinstance(v, str)]


def test_no_planted_pii_reaches_label_studio_or_a_release(tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/crawl/part-0000.parquet", planted_crawl())
    curated = run_stage(root, CURATE, CurateConfig(), ["raw/crawl"])
    scrubbed = run_stage(root, SCRUB, ScrubConfig(extra_phone_regions=["GB", "DE"]), [f"{curated['output']}/kept"])
    pool = root.read_table(f"{scrubbed['output']}/kept")
    assert pool.num_rows == 3

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
