"""Draw the synthetic example pages in infra/class-examples/{invoice,receipt,form,letter,other}/.

The offline classifier (an ImageNet backbone) learns each label from example images; no real documents with a
license that allows shipping them exist for every label, so these are drawn: the layouts of each kind of document
(an invoice's table and totals, a receipt's narrow strip, a form's boxes, a letter's blocks, a report's columns),
filled with random words. Deterministic (seeded). Photos come from scikit-image's CC0/public-domain samples, see
infra/class-examples/SOURCES.md.

    python infra/scripts/make_class_examples.py [--out infra/class-examples] [--per-label 4]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WORDS = (
    "service account total order payment delivery product monthly annual support office street road city park "
    "north south energy data cloud storage network hosting licence design report project meeting plan review "
    "market client supplier customer number amount period quarter update notice summary general terms contract"
).split()
NAMES = ["Acme GmbH", "Nordlicht AG", "Blue River Ltd", "Kestrel & Co", "Orion Services", "Maple Trading Inc"]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:  # the bitmap font without FreeType
    return ImageFont.load_default(size=size)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def paragraph(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, width: int, lines: int, size: int) -> int:
    f = font(size)
    for i in range(lines):
        text = words(rng, 14)
        while draw.textlength(text, font=f) > width:
            text = text.rsplit(" ", 1)[0]
        if i == lines - 1:
            text = text[: max(8, len(text) // 2)]
        draw.text((x, y), text, fill=rng.randint(0, 40), font=f)
        y += int(size * 1.5)
    return y


def invoice(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    m = w // 12
    d.text((m, m), rng.choice(NAMES), fill=0, font=font(w // 28))
    paragraph(d, rng, m, m + w // 20, w // 3, 3, w // 60)
    title = rng.choice(["INVOICE", "Invoice", "TAX INVOICE", "RECHNUNG"])
    d.text((w - m - w // 4, m), title, fill=0, font=font(w // 22))
    y = m + w // 12
    for label in ("Invoice no.", "Date", "Due date"):
        d.text((w - m - w // 4, y), f"{label}: {rng.randint(1000, 99999)}", fill=0, font=font(w // 60))
        y += w // 40
    y = h // 4
    d.text((m, y), "Bill to:", fill=0, font=font(w // 50))
    paragraph(d, rng, m, y + w // 35, w // 3, 3, w // 60)
    y = h // 3 + rng.randint(0, h // 20)
    cols = [m, m + w // 2, m + 2 * w // 3, w - m - w // 8]
    d.rectangle([m, y, w - m, y + w // 30], fill=rng.choice([200, 220, 235]))
    for x, title in zip(cols, ("Description", "Qty", "Unit price", "Amount"), strict=True):
        d.text((x + 4, y + 4), title, fill=0, font=font(w // 60))
    y += w // 25
    for _ in range(rng.randint(3, 9)):
        d.text((cols[0] + 4, y), words(rng, 3), fill=20, font=font(w // 62))
        d.text((cols[1] + 4, y), str(rng.randint(1, 9)), fill=20, font=font(w // 62))
        for x in cols[2:]:
            d.text((x + 4, y), f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}", fill=20, font=font(w // 62))
        y += w // 32
        d.line([m, y - 6, w - m, y - 6], fill=210)
    y += w // 30
    for label in ("Subtotal", "Tax", "Total"):
        d.text((cols[2], y), label, fill=0, font=font(w // 55))
        d.text((cols[3], y), f"{rng.randint(10, 9999)}.{rng.randint(0, 99):02d}", fill=0, font=font(w // 55))
        y += w // 30
    paragraph(d, rng, m, h - m - w // 15, w - 2 * m, 2, w // 75)
    return img


def receipt(rng: random.Random, w: int, h: int) -> Image.Image:
    rw = w // 3 + rng.randint(0, w // 10)
    strip = Image.new("L", (rw, h - rng.randint(0, h // 4)), rng.randint(235, 252))
    d = ImageDraw.Draw(strip)
    f = font(rw // 22)
    y = rw // 10
    for text in (rng.choice(NAMES).upper(), words(rng, 3), f"TEL {rng.randint(100000, 999999)}", "-" * 32):
        d.text(((rw - d.textlength(text, font=f)) / 2, y), text, fill=0, font=f)
        y += rw // 14
    while y < strip.height - rw // 2:
        item = words(rng, 2).upper()[:18]
        price = f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
        d.text((rw // 12, y), item, fill=0, font=f)
        d.text((rw - rw // 12 - d.textlength(price, font=f), y), price, fill=0, font=f)
        y += rw // 15
        if rng.random() < 0.12:
            d.text((rw // 12, y), "-" * 32, fill=0, font=f)
            y += rw // 15
            for label in ("TOTAL", "CASH", "CHANGE"):
                d.text((rw // 12, y), label, fill=0, font=f)
                y += rw // 15
    page = Image.new("L", (rw + 2 * (rw // 8), strip.height + 2 * (rw // 8)), rng.choice([255, 90, 140]))
    page.paste(strip, (rw // 8, rw // 8))
    return page.rotate(rng.uniform(-3, 3), expand=True, fillcolor=page.getpixel((0, 0)))


def form(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    m = w // 14
    d.text((m, m), words(rng, 2).title() + " Form " + str(rng.randint(100, 9999)), fill=0, font=font(w // 30))
    d.line([m, m + w // 18, w - m, m + w // 18], fill=0, width=3)
    y = m + w // 12
    while y < h - m - w // 10:
        row_h = rng.choice([w // 22, w // 18, w // 14])
        n = rng.randint(1, 4)
        cell = (w - 2 * m) // n
        for i in range(n):
            x = m + i * cell
            d.rectangle([x, y, x + cell, y + row_h], outline=0, width=1)
            d.text((x + 4, y + 3), words(rng, 2), fill=0, font=font(w // 85))
            if rng.random() < 0.3:
                d.text((x + 8, y + row_h // 2), words(rng, 2), fill=60, font=font(w // 60))
        y += row_h
        if rng.random() < 0.25:
            y += w // 60
            for i in range(rng.randint(2, 5)):
                x = m + i * (w - 2 * m) // 5
                d.rectangle([x, y, x + w // 60, y + w // 60], outline=0, width=2)
                d.text((x + w // 40, y), rng.choice(WORDS), fill=0, font=font(w // 70))
            y += w // 30
    d.text((m, h - m - w // 30), "Signature ____________________   Date __________", fill=0, font=font(w // 60))
    return img


def letter(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    m = w // 9
    d.text((m, m // 2), rng.choice(NAMES), fill=0, font=font(w // 30))
    d.line([m, m // 2 + w // 22, w - m, m // 2 + w // 22], fill=120, width=2)
    paragraph(d, rng, m, m + w // 12, w // 3, 4, w // 60)
    day = f"{rng.randint(1, 28)} March 20{rng.randint(10, 26)}"
    d.text((w - m - w // 4, m + w // 4), day, fill=0, font=font(w // 60))
    y = m + w // 3
    d.text(
        (m, y),
        "Dear " + rng.choice(["Sir or Madam", "Ms Weber", "Mr Smith", "customer"]) + ",",
        fill=0,
        font=font(w // 55),
    )
    y += w // 20
    for _ in range(rng.randint(2, 4)):
        y = paragraph(d, rng, m, y, w - 2 * m, rng.randint(3, 6), w // 58) + w // 40
    d.text((m, y), rng.choice(["Yours sincerely,", "Kind regards,", "Sincerely,"]), fill=0, font=font(w // 55))
    points = [(m + i * 6, y + w // 15 + int(12 * rng.random() - 6)) for i in range(30)]
    d.line(points, fill=30, width=2)
    return img


def other(rng: random.Random, w: int, h: int) -> Image.Image:
    """A page of a report or book: dense text in columns, or a sparse page (title page, figure, a few lines)."""
    return (sparse_page if rng.random() < 0.5 else text_page)(rng, w, h)


def sparse_page(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    m = w // 10
    y = rng.randint(m, h // 3)
    heading = words(rng, rng.randint(1, 5)).title()
    d.text((m + rng.randint(0, w // 4), y), heading, fill=0, font=font(w // rng.choice([20, 35, 60])))
    if rng.random() < 0.6:  # a figure: an ellipse mesh or a plot frame
        cx, cy, r = w // 2, h // 2, w // rng.randint(4, 7)
        for k in range(0, r, max(4, r // 12)):
            d.ellipse([cx - r - k // 2, cy - r // 2 + k // 3, cx + r + k // 2, cy + r // 2 - k // 3], outline=40)
    if rng.random() < 0.5:
        paragraph(d, rng, m, h - m - w // 10, w - 2 * m, rng.randint(1, 3), w // 70)
    return img


def text_page(rng: random.Random, w: int, h: int) -> Image.Image:
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    m = w // 12
    y = m
    if rng.random() < 0.6:
        d.text((m, y), words(rng, 5).title(), fill=0, font=font(w // 32))
        y += w // 14
    columns = rng.choice([1, 2, 2])
    gap = w // 30
    col_w = (w - 2 * m - (columns - 1) * gap) // columns
    for c in range(columns):
        cy = y
        x = m + c * (col_w + gap)
        while cy < h - m - w // 20:
            if rng.random() < 0.12:
                box_h = rng.randint(h // 12, h // 5)
                d.rectangle([x, cy, x + col_w, min(cy + box_h, h - m)], outline=80, fill=rng.choice([230, 245, 255]))
                cy += box_h + w // 40
                continue
            cy = paragraph(d, rng, x, cy, col_w, rng.randint(4, 12), w // (70 if columns == 2 else 60)) + w // 50
    d.text((w // 2, h - m // 2), str(rng.randint(1, 300)), fill=0, font=font(w // 60))
    return img


DRAWERS: dict[str, Callable[[random.Random, int, int], Image.Image]] = {
    "invoice": invoice,
    "receipt": receipt,
    "form": form,
    "letter": letter,
    "other": other,
}


def scanned(img: Image.Image, rng: random.Random) -> Image.Image:
    """Half the examples look scanned: slight blur, a grey cast, a small tilt."""
    if rng.random() < 0.5:
        return img
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    img = img.point(lambda v: int(30 + v * rng.uniform(0.75, 0.9)))
    return img.rotate(rng.uniform(-1.5, 1.5), fillcolor=230)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "class-examples")
    parser.add_argument("--per-label", type=int, default=4)
    args = parser.parse_args()
    for label, draw in DRAWERS.items():
        folder = args.out / label
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("synthetic-*.png"):
            old.unlink()
        for i in range(args.per_label):
            rng = random.Random(f"{label}-{i}")
            w, h = rng.choice([(850, 1100), (827, 1169)])
            image = scanned(draw(rng, w, h), rng)
            image.thumbnail((640, 640 * 1.5))
            image.convert("L").save(folder / f"synthetic-{i}.png", optimize=True)
    print(f"wrote {args.per_label} examples per label to {args.out}")


if __name__ == "__main__":
    main()
