"""A loopback web site with PII planted in every field a crawl reads: titles, text, alt text, captions, link and
image URLs, pixels drawn into PNG and JPEG images, and image metadata (EXIF GPS, PNG text chunks)."""

from __future__ import annotations

import html
import io
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageDraw, ImageFont, PngImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "curation"))
from loopback_server import LoopbackServer
from pii_values import FOUND, IN_CONTEXT, NATIONAL

# The crawl's own phone regions (ScrubConfig.extra_phone_regions): a loopback site has no country TLD, so
# the national numbers of these regions are found by configuration; FR below is found by the page's language.
CONFIGURED_REGIONS = ["GB", "DE", "JP", "AU", "ES", "BR", "IN"]
PERSONS = ["Jane Doe", "Siobhan O'Connor-Ng", "José Álvarez"]
FRENCH_PHONE = "06 12 34 56 78"
# Drawn into pixels, several members of each class: emails, phones of several formats, card numbers of
# several schemes. A value is (entity, text as drawn).
DRAWN = [
    [("email", "jane.doe@example.com"), ("phone", "(415) 555-2671"), ("credit_card", "4111 1111 1111 1111")],
    [("email", "lena.berg@example.net"), ("phone", "+44 20 7946 0958"), ("credit_card", "3782 822463 10005")],
    [("email", "m.rossi@example.org"), ("phone", "+1-415-555-0134"), ("credit_card", "6011 1111 1111 1117")],
    [("email", "info@flywheel-gallery.example"), ("phone", "415.555.0199"), ("credit_card", "5500 0000 0000 0004")],
]
# Values that ride in URLs: path segments and query values of links and image addresses.
URL_EMAILS = ["lena.berg@example.net", "o.connor@example.ie"]
URL_PHONES = ["4155550198", "+442079460958"]
URL_CARDS = ["4111111111111111", "378282246310005"]
URL_SECRETS = ["reset9fK2mQ7xL4pR8sT1", "Kx9mQ2vL7pR4sT8wZ3yB6nJ"]
EXIF_VALUES = ["Jane Doe", "jane.doe@example.com", "+1 415 555 2671"]
# (alt text, caption, the values planted in them) of each gallery picture.
CAPTIONS = [
    ("Photo by jane.doe@example.com", "Scan of the card 6759 6498 2648", ["jane.doe@example.com", "6759 6498 2648"]),
    (
        "Badge of Ms. Siobhan O'Connor-Ng, +33 6 12 34 56 78",
        "Sent from 192.168.10.254",
        ["Siobhan O'Connor-Ng", "+33 6 12 34 56 78", "192.168.10.254"],
    ),
    (
        "Ring (415) 555\u20130134 ext. 204",
        "IBAN GB82 WEST 1234 5698 7654 32",
        ["(415) 555\u20130134 ext. 204", "GB82 WEST 1234 5698 7654 32"],
    ),
    ("Call 0049 30 901820", "SSN: 123 45 6789", ["0049 30 901820", "123 45 6789"]),
    (
        "Holiday by José Álvarez, josé.garcía@correo.es",
        "Location shared with +7 495 123-45-67",
        ["José Álvarez", "josé.garcía@correo.es", "+7 495 123-45-67"],
    ),
]
FILLER = (
    "The studio opened its doors in spring and the gallery shows new work every month. Visitors walk through "
    "the rooms, read the notes beside each piece and leave their thoughts in the book by the door."
)
FRENCH = (
    "Bonjour à tous, notre atelier est ouvert du mardi au samedi. Pour toute question sur les tirages et les "
    "expositions, vous pouvez nous appeler au {phone} pendant les heures d'ouverture. Nous répondons avec plaisir "
    "à vos demandes et nous vous remercions de votre visite dans notre galerie."
)


@dataclass
class PlantedSite:
    """What the site serves (path -> (bytes, content type)) and every value planted in it, by where it went."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    text_values: list[str] = field(default_factory=list)
    url_values: list[str] = field(default_factory=list)
    drawn: list[list[tuple[str, str]]] = field(default_factory=list)
    metadata_values: list[str] = field(default_factory=list)

    @property
    def planted(self) -> list[str]:
        drawn = [value for lines in self.drawn for _, value in lines]
        return list(dict.fromkeys([*self.text_values, *self.url_values, *drawn, *self.metadata_values]))


def _background(size: tuple[int, int], colour: tuple[int, int, int], seed: int) -> Image.Image:
    """A flat colour with mild noise and a soft gradient, so the image is not near-uniform."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-18, 18, width)[None, :, None]
    pixels = np.full((height, width, 3), colour, np.float64) + ramp + rng.normal(0, 5, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in px


def pillow_picture(lines: list[str], size, colour, ink, font_size: int, seed: int) -> tuple[Image.Image, list[Box]]:
    """Text drawn with the FreeType font built into Pillow, one line per string; the picture and each line's box."""
    image = _background(size, colour, seed)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(font_size)
    boxes = []
    for k, line in enumerate(lines):
        origin = (30, 24 + int(font_size * 1.9) * k)
        draw.text(origin, line, font=font, fill=ink)
        boxes.append(tuple(int(v) for v in draw.textbbox(origin, line, font=font)))
    return image, boxes


def hershey_picture(lines: list[str], size, colour, ink, scale: float, seed: int) -> tuple[Image.Image, list[Box]]:
    """Text drawn with OpenCV's Hershey simplex font (another face than Pillow's), one line per string."""
    pixels = np.array(_background(size, colour, seed))
    boxes = []
    for k, line in enumerate(lines):
        x, y = 28, int(50 * scale) + int(52 * scale) * k
        cv2.putText(pixels, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 2, cv2.LINE_AA)
        (width, height), baseline = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        boxes.append((x, y - height, x + width, y + baseline))
    return Image.fromarray(pixels), boxes


def planted_exif(values: list[str]) -> Image.Exif:
    """EXIF with GPS, camera owner, description and a comment carrying `values` (person, email, phone)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PlantedCam"
    exif[ExifTags.Base.Artist] = values[0]
    exif[ExifTags.Base.ImageDescription] = f"sent by {values[1]}"
    exif[ExifTags.Base.Copyright] = f"call {values[2]}"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 39.0)
    return exif


def _encode(image: Image.Image, fmt: str, metadata: list[str]) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=92, exif=planted_exif(metadata))
    else:
        chunks = PngImagePlugin.PngInfo()
        chunks.add_text("Author", metadata[0])
        chunks.add_itxt("Comment", f"mail {metadata[1]}, phone {metadata[2]}")
        image.save(buffer, "PNG", pnginfo=chunks)
    return buffer.getvalue()


@dataclass(frozen=True)
class DrawnImage:
    """A picture with PII drawn in: its format, encoded bytes (with planted metadata) and each value's box."""

    fmt: str
    data: bytes
    boxes: list[Box]


def drawn_images() -> list[DrawnImage]:
    """The pictures of DRAWN: PNG and JPEG, light and dark, two fonts, four sizes."""
    texts = [[value for _, value in lines] for lines in DRAWN]
    pictures = [
        ("PNG", pillow_picture(texts[0], (720, 260), (236, 232, 220), (20, 20, 30), 32, 1)),
        ("JPEG", pillow_picture(texts[1], (860, 300), (28, 34, 48), (240, 240, 230), 38, 2)),
        ("PNG", hershey_picture(texts[2], (700, 250), (170, 205, 235), (10, 20, 60), 1.2, 3)),
        ("JPEG", hershey_picture(texts[3], (840, 300), (250, 220, 170), (90, 20, 10), 1.4, 4)),
    ]
    return [DrawnImage(fmt, _encode(image, fmt, EXIF_VALUES), boxes) for fmt, (image, boxes) in pictures]


def _page(title: str, paragraphs: list[str], extra: str = "", lang: str = "en") -> bytes:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"{extra if extra.startswith('<meta') else ''}</head><body><main><h1>{html.escape(title)}</h1>{body}"
        f"{'' if extra.startswith('<meta') else extra}</main></body></html>"
    ).encode()


def _chunks(values: list[Any], n: int) -> list[list[Any]]:
    return [values[k::n] for k in range(n)]


def build_site() -> PlantedSite:
    """Five text pages, one French page, and a gallery of four drawn pictures and one plain photo."""
    site = PlantedSite(drawn=DRAWN, metadata_values=list(EXIF_VALUES))
    found = [value for _, value in FOUND]
    context = [f"{before} {value}" for _, before, value in IN_CONTEXT]
    national = [value for value, region in NATIONAL if region in CONFIGURED_REGIONS]
    titles = [
        f"Dr. {PERSONS[0]} — {URL_EMAILS[0]}",
        f"Call +44 20 7946 0958 for Ms. {PERSONS[1]}",
        "Orders paid with 4000 0566 5566 5556",
        f"Mr. {PERSONS[2]} on 1-800-555-0199",
        "IBAN DE89 3704 0044 0532 0130 00 for donations",
    ]
    site.text_values += [*found, *[v for _, _, v in IN_CONTEXT], *national, *PERSONS, FRENCH_PHONE]
    site.text_values += ["4000 0566 5566 5556", "DE89 3704 0044 0532 0130 00", URL_EMAILS[0]]
    # Link URLs: an email and a phone as path segments, a card, a phone and a reset token as query values.
    links = [
        f"/people/{quote(URL_EMAILS[k % 2], safe='@')}/page-{k + 1}.html"
        f"?tel={quote(URL_PHONES[k % 2])}&card={URL_CARDS[k % 2]}&reset={URL_SECRETS[k % 2]}"
        for k in range(5)
    ]
    links[4] = f"/call/{URL_PHONES[0]}/gallery.html?mail={quote(URL_EMAILS[1], safe='')}"
    site.url_values += [*URL_EMAILS, *URL_PHONES, *URL_CARDS, *URL_SECRETS]
    pages = zip(_chunks(found, 5), _chunks(context, 5), _chunks(national, 5), titles, strict=True)
    for k, (values, secrets, phones, title) in enumerate(pages):
        sentences = [FILLER, *(f"Entry {n}: reach us at {v} any day." for n, v in enumerate(values))]
        sentences += [f"Account note: {v}." for v in secrets] + [f"Tel. {v} (office)." for v in phones]
        sentences.append(f"Signed, Dr. {PERSONS[k % 3]}. {FILLER}")
        nav = f'<nav><a href="{html.escape(links[k])}">next page</a> <a href="/fr/atelier.html">atelier</a></nav>'
        path = "/index.html" if k == 0 else unquote(urlsplit(links[k - 1]).path)
        site.files[path] = (_page(title, sentences, nav), "text/html; charset=utf-8")
    french = _page("Atelier", [FRENCH.format(phone=FRENCH_PHONE)], lang="fr")
    site.files["/fr/atelier.html"] = (french, "text/html; charset=utf-8")
    site.files[unquote(urlsplit(links[4]).path)] = _gallery(site)
    return site


def _gallery(site: PlantedSite) -> tuple[bytes, str]:
    """The gallery page: each picture under an address with PII, with PII in its alt text and caption."""
    figures = []
    for k, drawn in enumerate(drawn_images()):
        ext = "png" if drawn.fmt == "PNG" else "jpg"
        path = f"/img/{URL_EMAILS[k % 2]}/{URL_PHONES[k % 2]}/sign-{k}.{ext}"
        site.files[path] = (drawn.data, f"image/{'png' if drawn.fmt == 'PNG' else 'jpeg'}")
        alt, caption = CAPTIONS[k][:2]
        src = html.escape(f"{quote(path, safe='/@')}?card={URL_CARDS[k % 2]}&token={URL_SECRETS[k % 2]}")
        figcaption = f"<figcaption>{html.escape(caption)}</figcaption>"
        figures.append(f'<figure><img src="{src}" alt="{html.escape(alt)}">{figcaption}</figure>')
    photo = _background((320, 240), (120, 160, 90), 9)
    photo_path = "/img/holiday/photo.jpg"
    site.files[photo_path] = (_encode(photo, "JPEG", EXIF_VALUES), "image/jpeg")
    alt, caption = CAPTIONS[4][:2]
    figures.append(
        f'<figure><img src="{photo_path}?owner={URL_EMAILS[0]}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
    site.text_values += [value for *_, values in CAPTIONS for value in values]
    page = _page(f"Gallery of Dr. {PERSONS[0]}", [FILLER], "".join(figures))
    return page, "text/html; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: PiiSiteServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/robots.txt":
            found: tuple[bytes, str] | None = (b"User-agent: *\nAllow: /\n", "text/plain")
        else:
            found = self.server.site.files.get(path)
        body, ctype = found or (b"not found", "text/plain")
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PiiSiteServer(LoopbackServer):
    """`site` served on 127.0.0.1 (a free port); a context manager."""

    def __init__(self, site: PlantedSite) -> None:
        super().__init__(_Handler)
        self.site = site
