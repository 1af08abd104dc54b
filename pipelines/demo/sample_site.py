"""The demo's sample website: a seeded, procedurally drawn image gallery with planted defects and its ground truth."""

from __future__ import annotations

import argparse
import html
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from pipelines.demo.sample_images import (
    CLASSES,
    SET_SEPARATOR,
    build_gps_exif,
    choose_label_set,
    draw_class,
    draw_gallery_picture,
    encode,
    has_face,
    make_rng,
)
from pipelines.demo.sample_texts import TOPICS, make_topic_text, make_topic_title
from pipelines.demo.site_server import SiteServer

IMAGES_PER_PAGE = 5
_FACE_AT = (6, 14)  # base image numbers that get a face / GPS EXIF (small numbers: present at any size)
_EXIF_AT = (3, 11, 19)
_BROKEN_LINK = "/gallery/old-archive.html"  # linked from the index, never written: a 404 like any real site has
_ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"

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

# one per gallery page, from the first: PII in running text, where a scanner has to find it
_PII_LINES = (
    f"Questions about this series? Write to {PII_EMAILS[0]} or call our San Francisco studio on {PII_PHONES[0]}.",
    f"Our London office (United Kingdom) answers on {PII_PHONES[1]}; from abroad dial {PII_PHONES[2]}.",
    f"For press enquiries email {PII_EMAILS[1]}. US callers can also try {PII_PHONES[3]}.",
    f"Print orders were paid with card {PII_CARDS[0]}, exp 12/29, for the archive.",
    f"Curated by M. Rossi ({PII_EMAILS[2]}).",
)


class _Figure(NamedTuple):
    """One <figure> of a page: the image, its alt text and caption, and the srcset / <picture> source if any."""

    path: str
    alt: str
    caption: str
    srcset: str | None = None
    source: str | None = None


class _BasePicture(NamedTuple):
    """A base gallery picture as drawn, kept so the planted defects can be derived from it."""

    path: str
    image: Image.Image
    label: str


@dataclass
class _SiteFiles:
    """Every file of the site by URL path, with the truth about each image and page recorded as it is added."""

    files: dict[str, bytes] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    multilabel: bool = False  # pictures show label sets: each image's truth also lists its "labels"

    def add_image(
        self, path: str, data: bytes, label: str | None, defects: list[str], original: str | None = None
    ) -> None:
        self.files[path] = data
        self.images[path] = {"label": label, "defects": defects, "original": original}
        if self.multilabel:
            self.images[path]["labels"] = None if label is None else label.split(SET_SEPARATOR)

    def add_page(self, path: str, data: bytes, duplicate_of: str | None = None) -> None:
        self.files[path] = data
        self.pages[path] = {"duplicate_of": duplicate_of}

    def write(self, site_dir: Path) -> None:
        for path, data in self.files.items():
            (site_dir / path.lstrip("/")).write_bytes(data)


def generate_site(
    out_dir: Path, seed: int = 7, images_per_class: int = 60, multilabel: bool = False, text_pages_per_topic: int = 0
) -> dict:
    """Write the sample site under `out_dir/site/` and its ground truth to `out_dir/truth.json`.

    The same seed gives byte-identical files. Returns the truth dict (keys are URL paths). `multilabel`: each
    gallery picture shows a seeded set of 1 to 3 classes (sample_images.draw_picture), its truth in "labels"
    (and "label", the set joined by ";"); as many pictures as the single-class site has. With
    `text_pages_per_topic`, the site also has that many article pages per sample topic
    (pipelines.demo.sample_texts), linked from the home page, each page's topic in its truth.
    """
    if images_per_class < 4:
        raise ValueError(f"images_per_class must be >= 4 to plant every defect, got {images_per_class}")
    out_dir = Path(out_dir)
    _make_empty_site_dir(out_dir / "site")
    site = _SiteFiles(multilabel=multilabel)
    base, figures = _add_base_pictures(site, seed, images_per_class)
    extra = _plant_defects(site, seed, base, figures)
    order = _interleave(figures, extra)
    private = _add_private_pictures(site, seed)
    # one stream for all page text, drawn in page order: gallery pages, drafts, index
    prng = make_rng(seed, 5)
    page_paths = _add_gallery_pages(site, order, prng)
    # duplicate page: same bytes at another URL (links are absolute paths, so they resolve the same)
    dup_src = page_paths[min(1, len(page_paths) - 1)]
    site.add_page("/gallery/featured.html", site.files[dup_src], duplicate_of=dup_src)
    _add_drafts_page(site, private, prng)
    articles = _add_article_pages(site, seed, text_pages_per_topic)
    _add_index_page(site, page_paths, prng, articles)
    site.files["/robots.txt"] = _ROBOTS_TXT
    site.write(out_dir / "site")
    truth = _build_truth(site, seed, private)
    if articles:
        truth["topics"] = list(TOPICS)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return truth


def _spoken(name: str) -> str:
    """A class or label set as a caption says it: "checks and dots"."""
    return name.replace(SET_SEPARATOR, " and ")


def _make_empty_site_dir(site: Path) -> None:
    """A fresh folder tree, so no file of an earlier generation is served as part of this one."""
    if site.exists():
        shutil.rmtree(site)
    (site / "images").mkdir(parents=True)
    (site / "gallery").mkdir()
    (site / "private").mkdir()
    (site / "articles").mkdir()


def _add_base_pictures(site: _SiteFiles, seed: int, images_per_class: int) -> tuple[list[_BasePicture], list[_Figure]]:
    """The base pictures, classes interleaved so every page mixes classes; a few carry GPS EXIF or a face."""
    base: list[_BasePicture] = []
    figures: list[_Figure] = []
    n = 0
    for i in range(images_per_class):
        for c, single in enumerate(CLASSES):
            n += 1
            name = choose_label_set(make_rng(seed, 6, c, i)) if site.multilabel else single
            fmt = "PNG" if n % 8 == 0 and n not in _EXIF_AT + _FACE_AT else "JPEG"
            path = f"/images/img_{n:04d}.{'png' if fmt == 'PNG' else 'jpg'}"
            defects: list[str] = []
            exif = None
            if n in _EXIF_AT:
                exif = build_gps_exif(37.7749 + n / 100, -122.4194 - n / 100)
                defects.append("exif_gps")
            face = n in _FACE_AT
            if face:
                defects.append("face")
            # The cascade must find the planted faces and nothing else (a few patterns fool it), so redraw
            # until it agrees, checked on the encoded bytes as a reader sees them.
            for attempt in range(8):
                data, img = draw_gallery_picture(name, make_rng(seed, 1, c, i, attempt), fmt, exif=exif, face=face)
                if has_face(data, min_neighbors=5) if face else not has_face(data):
                    break
            else:
                raise RuntimeError(f"could not draw image {n} with the face cascade agreeing (seed {seed})")
            site.add_image(path, data, name, defects)
            base.append(_BasePicture(path, img, name))
            figures.append(
                _Figure(path, f"A {_spoken(name)} picture", f"{_spoken(name).capitalize()} study number {n}.")
            )
    return base, figures


def _plant_defects(site: _SiteFiles, seed: int, base: list[_BasePicture], figures: list[_Figure]) -> list[_Figure]:
    """Copies, near copies, a truncated file and icons, derived from defect-free base pictures in a seeded order.

    Returns the figures to add to the pages; two near copies are hung on their originals' figures instead.
    """
    picks = [int(i) for i in make_rng(seed, 2).permutation(len(base))]
    pick = iter(base[p] for p in picks if not site.images[base[p].path]["defects"])
    extra = _add_exact_duplicates(site, pick)
    extra += _add_near_duplicates(site, pick, figures)
    orig = next(pick).path  # corrupt: a JPEG cut short
    site.add_image("/images/broken_00.jpg", site.files[orig][: len(site.files[orig]) // 3], None, ["corrupt"])
    extra.append(_Figure("/images/broken_00.jpg", "A picture", "This one did not upload well."))
    for k in range(2):  # tiny: 12x12, an icon rather than a picture
        tiny = draw_class(CLASSES[k], 12, make_rng(seed, 3, k))
        path = f"/images/tiny_{k:02d}.png"
        site.add_image(path, encode(tiny, "PNG"), None, ["tiny"])
        extra.append(_Figure(path, "icon", ""))
    # PII also in alt text and captions
    extra[0] = extra[0]._replace(caption=f"Photo by {PII_EMAILS[0]}")
    extra[1] = extra[1]._replace(alt=f"Picture sent by {PII_EMAILS[2]}")
    return extra


def _add_exact_duplicates(site: _SiteFiles, pick: Iterator[_BasePicture]) -> list[_Figure]:
    """Same bytes, another URL."""
    extra = []
    for k in range(3):
        orig, _, name = next(pick)
        path = f"/images/copy_{k:02d}{Path(orig).suffix}"
        site.add_image(path, site.files[orig], name, ["exact_duplicate"], orig)
        extra.append(_Figure(path, f"A {_spoken(name)} picture", f"{_spoken(name).capitalize()} reposted."))
    return extra


def _add_near_duplicates(site: _SiteFiles, pick: Iterator[_BasePicture], figures: list[_Figure]) -> list[_Figure]:
    """Resized and re-encoded copies; the second is reachable only via srcset, the third only via <picture>."""
    extra = []
    for k, scale in enumerate((0.75, 1.5, 0.9)):  # always resized, so the bytes never equal the original's
        fmt = "PNG" if k == 2 else "JPEG"
        path = f"/images/near_{k:02d}.{'png' if fmt == 'PNG' else 'jpg'}"
        while True:  # a resampled copy can trip the face cascade too; take the next original then
            orig, img, name = next(pick)
            near = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BILINEAR)
            data = encode(near, fmt, quality=60 + 10 * k)
            if not has_face(data):
                break
        site.add_image(path, data, name, ["near_duplicate"], orig)
        at = [f.path for f in figures].index(orig)
        if k == 0:
            extra.append(_Figure(path, f"A {_spoken(name)} picture", f"{_spoken(name).capitalize()}, smaller print."))
        elif k == 1:  # the 2x variant of its original, found only in srcset
            figures[at] = _Figure(
                orig, f"A {_spoken(name)} picture", f"{_spoken(name).capitalize()}.", srcset=f"{orig} 1x, {path} 2x"
            )
        else:  # a PNG <source> of its original inside <picture>
            figures[at] = _Figure(orig, f"A {_spoken(name)} picture", f"{_spoken(name).capitalize()}.", source=path)
    return extra


def _interleave(figures: list[_Figure], extra: list[_Figure]) -> list[_Figure]:
    """The base figures with the extras spread among them deterministically, so no page is all defects."""
    order = figures[:]
    for k, fig in enumerate(extra):
        order.insert(min(len(order), 4 + k * max(1, len(order) // len(extra))), fig)
    return order


def _add_private_pictures(site: _SiteFiles, seed: int) -> list[str]:
    """Pictures linked only from the robots-disallowed drafts page; returns their paths."""
    paths = []
    for k in range(2):
        for attempt in range(8):
            data = encode(draw_class(CLASSES[k], 150, make_rng(seed, 4, k, attempt)), "JPEG")
            if not has_face(data):
                break
        path = f"/private/secret_{k:02d}.jpg"
        site.add_image(path, data, CLASSES[k], [])
        paths.append(path)
    return paths


def _add_gallery_pages(site: _SiteFiles, order: list[_Figure], prng: np.random.Generator) -> list[str]:
    """The gallery pages, IMAGES_PER_PAGE figures each, chained by Previous/Next links; returns their paths."""
    chunks = [order[i : i + IMAGES_PER_PAGE] for i in range(0, len(order), IMAGES_PER_PAGE)]
    page_paths = [f"/gallery/page-{i + 1:03d}.html" for i in range(len(chunks))]
    for i, chunk in enumerate(chunks):
        nav = [("/index.html", "Home")]
        if i > 0:
            nav.append((page_paths[i - 1], "Previous"))
        if i + 1 < len(chunks):
            nav.append((page_paths[i + 1], "Next"))
        paragraphs = [_write_paragraph(prng) for _ in range(2)]
        if i < len(_PII_LINES):
            paragraphs.insert(1, html.escape(_PII_LINES[i]))
        figs = [_render_figure(fig) for fig in chunk]
        site.add_page(page_paths[i], _render_page(f"Gallery page {i + 1}", paragraphs, figs, nav).encode())
    return page_paths


def _add_drafts_page(site: _SiteFiles, private: list[str], prng: np.random.Generator) -> None:
    figs = [_render_figure(_Figure(p, "internal", "Internal draft, do not publish.")) for p in private]
    page = _render_page("Private drafts", [html.escape(_write_paragraph(prng))], figs, [("/index.html", "Home")])
    site.add_page("/private/drafts.html", page.encode())


def _add_article_pages(site: _SiteFiles, seed: int, per_topic: int) -> list[tuple[str, str]]:
    """`per_topic` article pages of each sample topic, interleaved; returns their (path, title)."""
    rng = make_rng(seed, 6)
    found = []
    for i in range(per_topic):
        for topic in TOPICS:
            path = f"/articles/{topic}-{i + 1:03d}.html"
            title = make_topic_title(topic, rng)
            paragraphs = [html.escape(make_topic_text(topic, rng)) for _ in range(2)]
            site.add_page(path, _render_page(title, paragraphs, [], [("/index.html", "Home")]).encode())
            site.pages[path]["topic"] = topic
            found.append((path, title))
    return found


def _add_index_page(
    site: _SiteFiles, page_paths: list[str], prng: np.random.Generator, articles: list[tuple[str, str]]
) -> None:
    """The home page: links to every page, the disallowed drafts, a broken link and an off-site one."""
    nav = [(p, f"Gallery page {i + 1}") for i, p in enumerate(page_paths)] + articles
    nav += [
        ("/gallery/featured.html", "Featured"),
        ("/private/drafts.html", "Drafts"),
        (_BROKEN_LINK, "Old archive (moved)"),
        ("http://example.com/partner/gallery.html", "Our partner gallery"),
    ]
    paragraphs = [_write_paragraph(prng), html.escape("Everything here is drawn by a program from a fixed seed.")]
    site.add_page("/index.html", _render_page("Flywheel sample gallery", paragraphs, [], nav).encode())


def _build_truth(site: _SiteFiles, seed: int, private: list[str]) -> dict:
    return {
        "seed": seed,
        "classes": list(CLASSES),
        "task": "multilabel" if site.multilabel else "classify",
        "images": dict(sorted(site.images.items())),
        "pages": dict(sorted(site.pages.items())),
        "pii": {"email": list(PII_EMAILS), "phone": list(PII_PHONES), "credit_card": list(PII_CARDS)},
        "robots_disallowed": sorted(["/private/drafts.html", *private]),
        "broken_links": [_BROKEN_LINK],
    }


def _write_sentence(rng: np.random.Generator, n: int) -> str:
    words = [_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=n)]
    return " ".join(words).capitalize() + "."


def _write_paragraph(rng: np.random.Generator) -> str:
    return " ".join(_write_sentence(rng, int(rng.integers(6, 14))) for _ in range(int(rng.integers(3, 6))))


def _render_page(title: str, paragraphs: list[str], figures: list[str], nav: list[tuple[str, str]]) -> str:
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


def _render_figure(fig: _Figure) -> str:
    img = (
        f'<img src="{fig.path}" alt="{html.escape(fig.alt)}"' + (f' srcset="{fig.srcset}"' if fig.srcset else "") + ">"
    )
    if fig.source:
        img = f'<picture><source srcset="{fig.source}" type="image/png">{img}</picture>'
    return f"    <figure>{img}<figcaption>{html.escape(fig.caption)}</figcaption></figure>"


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
