"""The sample site: deterministic, every planted defect recorded in truth.json and really present, CORS served."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest
from PIL import Image

from crawlers.run import PROJECT_ROOT
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer

DEFECTS = {"exact_duplicate", "near_duplicate", "corrupt", "tiny", "exif_gps", "face"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate_site(out, seed=11, images_per_class=6)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in re.sub(r"\D", "", number)][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def test_same_seed_gives_identical_bytes_and_another_seed_differs(site, tmp_path):
    out, _ = site
    generate_site(tmp_path / "a", seed=11, images_per_class=6)
    assert _files(tmp_path / "a") == _files(out)
    generate_site(tmp_path / "b", seed=12, images_per_class=6)
    assert _files(tmp_path / "b")["site/images/img_0001.jpg"] != _files(out)["site/images/img_0001.jpg"]


def test_truth_is_outside_the_served_folder(site):
    out, truth = site
    assert (out / "truth.json").is_file()
    assert not list((out / "site").rglob("truth*"))
    assert len(truth["classes"]) >= 4
    assert truth["seed"] == 11


def test_every_defect_is_recorded_and_really_present(site):
    out, truth = site
    images = truth["images"]
    served = out / "site"
    by_defect: dict[str, list[str]] = {d: [] for d in DEFECTS}
    for path, info in images.items():
        assert (served / path.lstrip("/")).is_file(), path
        for defect in info["defects"]:
            by_defect[defect].append(path)
    assert all(by_defect.values()), {d: len(v) for d, v in by_defect.items()}

    for path in by_defect["exact_duplicate"]:
        original = images[path]["original"]
        assert (served / path.lstrip("/")).read_bytes() == (served / original.lstrip("/")).read_bytes()
        assert images[path]["label"] == images[original]["label"] is not None
    for path in by_defect["near_duplicate"]:
        original = images[path]["original"]
        assert (served / path.lstrip("/")).read_bytes() != (served / original.lstrip("/")).read_bytes()
        assert images[path]["label"] == images[original]["label"] is not None
    for path in by_defect["corrupt"]:
        assert images[path]["label"] is None
        with pytest.raises(OSError), Image.open(served / path.lstrip("/")) as im:
            im.load()
    for path in by_defect["tiny"]:
        assert images[path]["label"] is None
        assert Image.open(served / path.lstrip("/")).size == (12, 12)
    for path in by_defect["exif_gps"]:
        gps = Image.open(served / path.lstrip("/")).getexif().get_ifd(0x8825)
        assert gps[1] in ("N", "S") and len(gps[2]) == 3 and gps[3] in ("E", "W")
    clean = [p for p, i in images.items() if not i["defects"]]
    assert not any(Image.open(served / p.lstrip("/")).getexif().get_ifd(0x8825) for p in clean)


def test_sizes_formats_and_labels(site):
    out, truth = site
    suffixes = set()
    for path, info in truth["images"].items():
        if info["defects"]:
            continue
        suffixes.add(Path(path).suffix)
        with Image.open(out / "site" / path.lstrip("/")) as im:
            assert min(im.size) >= 128 and max(im.size) <= 192
        assert info["label"] in truth["classes"]
    assert suffixes == {".jpg", ".png"}


def test_haar_cascade_finds_the_planted_faces_and_only_those(site):
    out, truth = site
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for path, info in truth["images"].items():
        if "corrupt" in info["defects"]:
            continue
        gray = cv2.imread(str(out / "site" / path.lstrip("/")), cv2.IMREAD_GRAYSCALE)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        assert (len(faces) > 0) == ("face" in info["defects"]), path
        if "face" in info["defects"]:
            assert info["label"] in truth["classes"]


def test_pages_pii_robots_and_external_link(site):
    out, truth = site
    served = out / "site"
    html = {p: (served / p.lstrip("/")).read_text() for p in truth["pages"]}
    everything = "\n".join(html.values())
    for kind in ("email", "phone", "credit_card"):
        assert truth["pii"][kind]
        for value in truth["pii"][kind]:
            assert value in everything, (kind, value)
    assert all(_luhn_ok(card) for card in truth["pii"]["credit_card"])
    assert re.search(r"(alt|figcaption)[^<]*" + re.escape(truth["pii"]["email"][0]), everything)

    dups = {p: i["duplicate_of"] for p, i in truth["pages"].items() if i["duplicate_of"]}
    assert dups and all(html[p] == html[o] for p, o in dups.items())

    assert "Disallow: /private/" in (served / "robots.txt").read_text()
    assert truth["robots_disallowed"] and all(p.startswith("/private/") for p in truth["robots_disallowed"])
    public = "\n".join(h for p, h in html.items() if not p.startswith("/private/"))
    for path in truth["robots_disallowed"]:
        if path.endswith(".jpg"):  # private images are linked only from the private page
            assert path not in public
    assert 'href="http://example.com/' in html["/index.html"]
    for path in truth["broken_links"]:
        assert f'href="{path}"' in html["/index.html"] and not (served / path.lstrip("/")).exists()
    gallery = [p for p in html if p.startswith("/gallery/page-")]
    assert all(p in html["/index.html"] for p in gallery)


def test_generate_rejects_too_few_images(tmp_path):
    with pytest.raises(ValueError, match="images_per_class"):
        generate_site(tmp_path, images_per_class=2)


def test_server_sends_cors_on_every_response(site):
    out, _ = site
    with SiteServer(out / "site") as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/images/img_0001.jpg") as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            body = resp.read()
        assert body == (out / "site/images/img_0001.jpg").read_bytes()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "/missing.html")
        assert err.value.code == 404 and err.value.headers["Access-Control-Allow-Origin"] == "*"


def test_server_rejects_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        SiteServer(tmp_path / "nope")


def test_cli_serve_stops_cleanly_on_sigterm(site):
    out, _ = site
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.demo.sample_site", "serve", "--dir", str(out / "site"), "--port", "0"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].strip()
        with urllib.request.urlopen(url + "/robots.txt") as resp:
            assert b"Disallow" in resp.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_generate(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.demo.sample_site",
            "generate",
            "--out",
            str(tmp_path),
            "--images-per-class",
            "4",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "images" in result.stdout
    assert (tmp_path / "truth.json").is_file() and (tmp_path / "site/index.html").is_file()


def test_the_scrubbers_detectors_find_the_planted_pii_in_the_pages_and_nothing_else(site):
    """The demo reports 4 phones: the four planted spellings, of three numbers (the London number is written
    nationally and internationally); nothing else in the generated prose looks like PII to the detectors."""
    from collections import Counter

    from crawlers.page_text import extract_text
    from curation.pii import find_pii, regions_from_hints

    out, truth = site
    regions = regions_from_hints(["US"], "en")  # what scrub tries on the demo's English pages
    found: Counter[tuple[str, str]] = Counter()
    for path, info in truth["pages"].items():
        if info["duplicate_of"] or path in truth["robots_disallowed"]:
            continue  # curate drops the copy; the crawl never fetches the disallowed page
        text = extract_text((out / "site" / path.lstrip("/")).read_text(), "http://127.0.0.1" + path) or ""
        found.update((s.entity, text[s.start : s.end]) for s in find_pii(text, regions[0], regions[1:]))
    planted = Counter((kind, value) for kind, values in truth["pii"].items() for value in values)
    assert found == planted
    assert len(truth["pii"]["phone"]) == 4 and len({re.sub(r"\D", "", p)[-10:] for p in truth["pii"]["phone"]}) == 3
