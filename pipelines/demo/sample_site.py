"""The demo's sample website: a seeded, procedurally drawn image gallery with planted defects and its ground truth."""

from __future__ import annotations

import argparse
import functools
import html
import io
import json
import math
import os
import shutil
import signal
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, TiffImagePlugin

# Three textures and a scene with none. Measured with a 3-conv CNN at 64x64 trained on 100 labels:
# circles/triangles were confused (71 % test accuracy), so were rings/stripes (76 %).
CLASSES: tuple[str, ...] = ("dots", "stripes", "checks", "sky")
IMAGES_PER_PAGE = 5
# Face box of skimage's astronaut() as found by OpenCV's haarcascade_frontalface_default
# (x=177, y=66, w=95, h=95, measured); the crop keeps a margin so the cascade still sees a whole face.
_ASTRONAUT_FACE_CROP = (142, 31, 307, 196)
_FACE_SIZE = 110  # px on a ~180 px image: the brief's 90-120 px face, big enough for the cascade
_FACE_AT = (6, 14)  # base image numbers that get a face / GPS EXIF (small numbers: present at any size)
_EXIF_AT = (3, 11, 19)
_BROKEN_LINK = "/gallery/old-archive.html"  # linked from the index, never written: a 404 like any real site has

_WORDS = [
    "gallery",
    "pattern",
    "colour",
    "shape",
    "light",
    "study",
    "texture",
    "composition",
    "series",
    "archive",
    "print",
    "sample",
    "form",
    "motion",
    "contrast",
    "edge",
    "surface",
    "line",
    "field",
    "layer",
    "figure",
    "tone",
    "detail",
    "frame",
    "panel",
    "view",
    "scene",
    "shadow",
    "grain",
    "paper",
    "ink",
    "studio",
    "morning",
    "evening",
    "collection",
    "volume",
    "catalogue",
    "exhibit",
    "project",
    "workshop",
]

PII_EMAILS = ("jane.doe@example.org", "press@flywheel-gallery.example", "m.rossi@example.net")
PII_PHONES = ("+1 415-555-0132", "(020) 7946 0958", "+44 20 7946 0958", "415.555.0199")
PII_CARDS = ("4111 1111 1111 1111",)


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, *salt])


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    r, g, b = rng.integers(lo, hi, size=3)
    return int(r), int(g), int(b)


def _draw_class(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One procedurally drawn picture of class `name`, `size` px square, with colour noise."""
    bg = _colour(rng, 0, 120) if rng.random() < 0.5 else _colour(rng, 140, 256)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    fg = tuple(255 - c for c in bg)
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.array(img)
    if name == "dots":
        for _ in range(int(rng.integers(12, 40))):
            r = int(rng.integers(size // 28, size // 12))
            cx, cy = (int(v) for v in rng.integers(0, size, size=2))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng) if rng.random() < 0.3 else fg)
        arr = np.array(img)
    elif name == "stripes":
        period = int(rng.integers(10, 26))
        angle = float(rng.uniform(0, math.pi))
        dx, dy = math.cos(angle), math.sin(angle)
        band = ((xx * dx + yy * dy) // (period / 2)).astype(int) % 2 == 1
        arr[band] = fg
    elif name == "checks":
        cell = int(rng.integers(12, 30))
        ox, oy = (int(v) for v in rng.integers(0, cell, size=2))
        on = (((xx + ox) // cell + (yy + oy) // cell) % 2) == 1
        arr[on] = fg
    elif name == "sky":
        # a smooth vertical gradient, a sun and a flat ground band: no repeated edges, unlike the textures
        top, bottom = np.array(_colour(rng)), np.array(_colour(rng))
        t = (yy / max(size - 1, 1))[..., None]
        arr = (top * (1 - t) + bottom * t).astype(np.uint8)
        horizon = int(rng.integers(size // 2, 5 * size // 6))
        arr[horizon:] = _colour(rng, 0, 140)
        r = int(rng.integers(size // 10, size // 5))
        cx, cy = int(rng.integers(r, size - r)), int(rng.integers(r, max(r + 1, horizon - r)))
        arr[np.hypot(xx - cx, yy - cy) < r] = _colour(rng, 180, 256)
    else:
        raise ValueError(f"unknown class {name!r}")
    arr = arr.astype(np.int16) + rng.normal(0, 12, size=arr.shape).astype(np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))
    return img


def _encode(img: Image.Image, fmt: str, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kwargs: dict[str, Any] = {"quality": quality}
        if exif is not None:
            kwargs["exif"] = exif
        img.save(buf, "JPEG", **kwargs)
    else:
        img.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def _gps_exif(lat: float, lon: float) -> Image.Exif:
    """EXIF with a GPS IFD (tag 0x8825) holding `lat`, `lon` as degrees/minutes/seconds rationals."""

    def dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
        value = abs(value)
        deg = int(value)
        minutes = int((value - deg) * 60)
        seconds = round(((value - deg) * 60 - minutes) * 60 * 100)
        return (
            TiffImagePlugin.IFDRational(deg, 1),
            TiffImagePlugin.IFDRational(minutes, 1),
            TiffImagePlugin.IFDRational(seconds, 100),
        )

    exif = Image.Exif()
    exif[0x010F] = "FlywheelCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(lon)
    return exif


@functools.cache
def _face_cascade() -> Any:
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def _has_face(data: bytes, min_neighbors: int = 3) -> bool:
    """Whether OpenCV's frontal-face Haar cascade fires on encoded image bytes.

    The default minNeighbors=3 is looser than the usual 5 (OpenCV's tutorial value), so a picture kept
    as face-free stays so with some margin.
    """
    import cv2

    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return len(_face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=min_neighbors)) > 0


@functools.cache
def _face_patch() -> Image.Image:
    from skimage import data

    face = Image.fromarray(data.astronaut()).crop(_ASTRONAUT_FACE_CROP)
    return face.resize((_FACE_SIZE, _FACE_SIZE), Image.Resampling.LANCZOS)


def _sentence(rng: np.random.Generator, n: int) -> str:
    words = [_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=n)]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: np.random.Generator) -> str:
    return " ".join(_sentence(rng, int(rng.integers(6, 14))) for _ in range(int(rng.integers(3, 6))))


def _page_html(title: str, paragraphs: list[str], figures: list[str], nav: list[tuple[str, str]]) -> str:
    links = "\n".join(f'      <li><a href="{html.escape(href)}">{html.escape(text)}</a></li>' for href, text in nav)
    body = "\n".join(f"    <p>{p}</p>" for p in paragraphs)
    figs = "\n".join(figures)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n'
        f'  <meta charset="utf-8">\n  <title>{html.escape(title)}</title>\n</head>\n<body>\n'
        f"  <nav>\n    <ul>\n{links}\n    </ul>\n  </nav>\n"
        f"  <main>\n    <article>\n    <h1>{html.escape(title)}</h1>\n{body}\n{figs}\n    </article>\n  </main>\n"
        "  <footer><p>Flywheel sample gallery. All pictures are generated.</p></footer>\n</body>\n</html>\n"
    )


def _figure(src: str, alt: str, caption: str, srcset: str | None = None, source: str | None = None) -> str:
    img = f'<img src="{src}" alt="{html.escape(alt)}"' + (f' srcset="{srcset}"' if srcset else "") + ">"
    if source:
        img = f'<picture><source srcset="{source}" type="image/png">{img}</picture>'
    return f"    <figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def generate_site(out_dir: Path, seed: int = 7, images_per_class: int = 60) -> dict:
    """Write the sample site under `out_dir/site/` and its ground truth to `out_dir/truth.json`.

    The same seed gives byte-identical files. Returns the truth dict (keys are URL paths).
    """
    if images_per_class < 4:
        raise ValueError(f"images_per_class must be >= 4 to plant every defect, got {images_per_class}")
    out_dir = Path(out_dir)
    site = out_dir / "site"
    if site.exists():
        shutil.rmtree(site)
    (site / "images").mkdir(parents=True)
    (site / "gallery").mkdir()
    (site / "private").mkdir()

    images: dict[str, dict[str, Any]] = {}
    files: dict[str, bytes] = {}
    # (path, alt, caption, srcset, picture source) per figure, in page order
    figures: list[tuple[str, str, str, str | None, str | None]] = []

    def add(path: str, data: bytes, label: str | None, defects: list[str], original: str | None = None) -> None:
        files[path] = data
        images[path] = {"label": label, "defects": defects, "original": original}

    # base images, classes interleaved so every page mixes classes
    base: list[tuple[str, Image.Image, str]] = []
    n = 0
    for i in range(images_per_class):
        for c, name in enumerate(CLASSES):
            n += 1
            fmt = "PNG" if n % 8 == 0 and n not in _EXIF_AT + _FACE_AT else "JPEG"
            path = f"/images/img_{n:04d}.{'png' if fmt == 'PNG' else 'jpg'}"
            defects: list[str] = []
            exif = None
            if n in _EXIF_AT:
                exif = _gps_exif(37.7749 + n / 100, -122.4194 - n / 100)
                defects.append("exif_gps")
            if n in _FACE_AT:
                defects.append("face")
            # The cascade must find the planted faces and nothing else (a few patterns fool it), so redraw
            # until it agrees, checked on the encoded bytes as a reader sees them.
            for attempt in range(8):
                rng = _rng(seed, 1, c, i, attempt)
                size = int(rng.integers(128, 193))
                img = _draw_class(name, size, rng)
                if n in _FACE_AT:
                    img = img.resize((max(size, 170), max(size, 170)))
                    ox, oy = (int(v) for v in rng.integers(0, img.width - _FACE_SIZE + 1, size=2))
                    img.paste(_face_patch(), (ox, oy))
                data = _encode(img, fmt, quality=int(rng.integers(85, 96)), exif=exif)
                if _has_face(data, min_neighbors=5) if n in _FACE_AT else not _has_face(data):
                    break
            else:
                raise RuntimeError(f"could not draw image {n} with the face cascade agreeing (seed {seed})")
            add(path, data, name, defects)
            base.append((path, img, name))
            figures.append((path, f"A {name} picture", f"{name.capitalize()} study number {n}.", None, None))

    # planted defects, drawn from the base set deterministically
    drng = _rng(seed, 2)
    picks = [int(i) for i in drng.permutation(len(base))]
    pick = iter(p for p in picks if not images[base[p][0]]["defects"])
    extra: list[tuple[str, str, str, str | None, str | None]] = []
    for k in range(3):  # exact duplicates: same bytes, another URL
        orig, _, name = base[next(pick)]
        path = f"/images/copy_{k:02d}{Path(orig).suffix}"
        add(path, files[orig], name, ["exact_duplicate"], orig)
        extra.append((path, f"A {name} picture", f"{name.capitalize()} reposted.", None, None))
    for k in range(3):  # near duplicates: resized and re-encoded; one only reachable via srcset/picture
        scale = (0.75, 1.5, 0.9)[k]  # always resized, so the bytes never equal the original's
        fmt = "PNG" if k == 2 else "JPEG"
        path = f"/images/near_{k:02d}.{'png' if fmt == 'PNG' else 'jpg'}"
        while True:  # a resampled copy can trip the face cascade too; take the next original then
            orig, img, name = base[next(pick)]
            near = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BILINEAR)
            data = _encode(near, fmt, quality=60 + 10 * k)
            if not _has_face(data):
                break
        add(path, data, name, ["near_duplicate"], orig)
        at = [f[0] for f in figures].index(orig)
        if k == 0:
            extra.append((path, f"A {name} picture", f"{name.capitalize()}, smaller print.", None, None))
        elif k == 1:  # the 2x variant of its original, found only in srcset
            figures[at] = (orig, f"A {name} picture", f"{name.capitalize()}.", f"{orig} 1x, {path} 2x", None)
        else:  # a PNG <source> of its original inside <picture>
            figures[at] = (orig, f"A {name} picture", f"{name.capitalize()}.", None, path)
    orig, _, _ = base[next(pick)]  # corrupt: a JPEG cut short
    add("/images/broken_00.jpg", files[orig][: len(files[orig]) // 3], None, ["corrupt"])
    extra.append(("/images/broken_00.jpg", "A picture", "This one did not upload well.", None, None))
    for k in range(2):  # tiny: 12x12, an icon rather than a picture
        tiny = _draw_class(CLASSES[k], 12, _rng(seed, 3, k))
        path = f"/images/tiny_{k:02d}.png"
        add(path, _encode(tiny, "PNG"), None, ["tiny"])
        extra.append((path, "icon", "", None, None))
    # PII also in alt text and captions
    extra[0] = (extra[0][0], extra[0][1], f"Photo by {PII_EMAILS[0]}", None, None)
    extra[1] = (extra[1][0], f"Picture sent by {PII_EMAILS[2]}", extra[1][2], None, None)

    # interleave the extras among the base figures deterministically
    order = figures[:]
    for k, fig in enumerate(extra):
        order.insert(min(len(order), 4 + k * max(1, len(order) // len(extra))), fig)

    # private images: only linked from the robots-disallowed page
    private_imgs = []
    for k in range(2):
        for attempt in range(8):
            data = _encode(_draw_class(CLASSES[k], 150, _rng(seed, 4, k, attempt)), "JPEG")
            if not _has_face(data):
                break
        path = f"/private/secret_{k:02d}.jpg"
        add(path, data, CLASSES[k], [])
        private_imgs.append(path)

    # pages
    prng = _rng(seed, 5)
    pages: dict[str, dict[str, Any]] = {}
    page_html: dict[str, str] = {}
    chunks = [order[i : i + IMAGES_PER_PAGE] for i in range(0, len(order), IMAGES_PER_PAGE)]
    page_paths = [f"/gallery/page-{i + 1:03d}.html" for i in range(len(chunks))]
    pii_lines = [
        f"Questions about this series? Write to {PII_EMAILS[0]} or call our San Francisco studio on {PII_PHONES[0]}.",
        f"Our London office (United Kingdom) answers on {PII_PHONES[1]}; from abroad dial {PII_PHONES[2]}.",
        f"For press enquiries email {PII_EMAILS[1]}. US callers can also try {PII_PHONES[3]}.",
        f"Print orders were paid with card {PII_CARDS[0]}, exp 12/29, for the archive.",
        f"Curated by M. Rossi ({PII_EMAILS[2]}).",
    ]
    for i, chunk in enumerate(chunks):
        nav = [("/index.html", "Home")]
        if i > 0:
            nav.append((page_paths[i - 1], "Previous"))
        if i + 1 < len(chunks):
            nav.append((page_paths[i + 1], "Next"))
        paragraphs = [_paragraph(prng) for _ in range(2)]
        if i < len(pii_lines):
            paragraphs.insert(1, html.escape(pii_lines[i]))
        figs = [_figure(p, alt, cap, srcset, src) for p, alt, cap, srcset, src in chunk]
        page_html[page_paths[i]] = _page_html(f"Gallery page {i + 1}", paragraphs, figs, nav)
        pages[page_paths[i]] = {"duplicate_of": None}
    # duplicate page: same bytes at another URL (links are absolute paths, so they resolve the same)
    dup_src = page_paths[min(1, len(page_paths) - 1)]
    page_html["/gallery/featured.html"] = page_html[dup_src]
    pages["/gallery/featured.html"] = {"duplicate_of": dup_src}

    private_figs = [_figure(p, "internal", "Internal draft, do not publish.") for p in private_imgs]
    page_html["/private/drafts.html"] = _page_html(
        "Private drafts", [html.escape(_paragraph(prng))], private_figs, [("/index.html", "Home")]
    )
    pages["/private/drafts.html"] = {"duplicate_of": None}

    index_nav = [(p, f"Gallery page {i + 1}") for i, p in enumerate(page_paths)]
    index_nav += [
        ("/gallery/featured.html", "Featured"),
        ("/private/drafts.html", "Drafts"),
        (_BROKEN_LINK, "Old archive (moved)"),
        ("http://example.com/partner/gallery.html", "Our partner gallery"),
    ]
    page_html["/index.html"] = _page_html(
        "Flywheel sample gallery",
        [_paragraph(prng), html.escape("Everything here is drawn by a program from a fixed seed.")],
        [],
        index_nav,
    )
    pages["/index.html"] = {"duplicate_of": None}

    for path, text in page_html.items():
        files[path] = text.encode()
    files["/robots.txt"] = b"User-agent: *\nDisallow: /private/\n"
    for path, data in files.items():
        (site / path.lstrip("/")).write_bytes(data)

    truth = {
        "seed": seed,
        "classes": list(CLASSES),
        "images": dict(sorted(images.items())),
        "pages": dict(sorted(pages.items())),
        "pii": {"email": list(PII_EMAILS), "phone": list(PII_PHONES), "credit_card": list(PII_CARDS)},
        "robots_disallowed": sorted(["/private/drafts.html", *private_imgs]),
        "broken_links": [_BROKEN_LINK],
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return truth


class _Handler(SimpleHTTPRequestHandler):
    """Static files with wide-open CORS (Label Studio's UI loads images cross-origin) and no access log.

    Files carry an ETag (mtime in ns and size, as nginx builds it) besides the Last-Modified the standard
    handler sends; a matching If-None-Match gets 304 Not Modified, so recrawls are tested for real.
    """

    _etag: str | None = None

    def send_head(self) -> Any:
        self._etag = None
        path = self.translate_path(self.path)
        if os.path.isfile(path):
            st = os.stat(path)
            self._etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            wanted = [tag.strip() for tag in self.headers.get("If-None-Match", "").split(",")]
            if self._etag in wanted:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.end_headers()
                return None
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        if self._etag:
            self.send_header("ETag", self._etag)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SiteServer:
    """A threaded static HTTP server for `site_dir` on loopback; a context manager (`with SiteServer(d) as s`)."""

    def __init__(self, site_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        site_dir = Path(site_dir)
        if not site_dir.is_dir():
            raise FileNotFoundError(f"site folder not found: {site_dir}")
        self.site_dir = site_dir
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> SiteServer:
        handler = functools.partial(_Handler, directory=str(self.site_dir))
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="site-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground (starting if needed) until SIGTERM or Ctrl-C."""
        if self._server is None:
            self.start()
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo.sample_site", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the site and truth.json")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--images-per-class", type=int, default=60)
    srv = sub.add_parser("serve", help="serve a generated site on 127.0.0.1 in the foreground")
    srv.add_argument("--dir", type=Path, required=True)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    if args.command == "generate":
        truth = generate_site(args.out, seed=args.seed, images_per_class=args.images_per_class)
        print(f"wrote {len(truth['images'])} images, {len(truth['pages'])} pages to {args.out / 'site'}")
    else:
        server = SiteServer(args.dir, host=args.host, port=args.port).start()
        print(f"serving {args.dir} at {server.url}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
