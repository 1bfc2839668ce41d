"""Draw the parent page's app icons once (tracker/api/static/icon-*.png, badge-96.png); the PNGs are
committed, nothing draws them at run time. A white map pin on the pages' blue: the app icon (rounded),
the maskable icon (full bleed, the pin inside the 80 % safe zone) and the notification badge (the pin
alone, white on transparent: Android draws it in one colour in the status bar).

    .venv/bin/python scripts/make_pwa_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

BLUE = (29, 78, 216, 255)  # #1d4ed8, the pages' route colour and the manifest's theme colour
WHITE = (255, 255, 255, 255)
OUT = Path(__file__).resolve().parent.parent / "tracker" / "api" / "static"
SCALE = 4  # drawn large and scaled down: smooth edges


def pin(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, colour: tuple[int, ...], hole: tuple[int, ...]
) -> None:
    """A map pin: a disc of radius r centred at (cx, cy), its point 1.9 r below, a hole in the disc."""
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    draw.polygon(
        [(cx - 0.83 * r, cy + 0.55 * r), (cx + 0.83 * r, cy + 0.55 * r), (cx, cy + 1.9 * r)], fill=colour
    )
    h = 0.42 * r
    draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=hole)


def icon(size: int, *, maskable: bool) -> Image.Image:
    s = size * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    if maskable:
        draw.rectangle([0, 0, s, s], fill=BLUE)
        r = 0.2 * s
    else:
        draw.rounded_rectangle([0, 0, s - 1, s - 1], radius=0.22 * s, fill=BLUE)
        r = 0.25 * s
    pin(draw, s / 2, s / 2 - 0.45 * r, r, WHITE, BLUE)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def badge(size: int) -> Image.Image:
    s = size * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    r = 0.3 * s
    pin(ImageDraw.Draw(img), s / 2, s / 2 - 0.45 * r, r, WHITE, (0, 0, 0, 0))
    return img.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    for size in (192, 512):
        icon(size, maskable=False).save(OUT / f"icon-{size}.png", optimize=True)
    icon(512, maskable=True).save(OUT / "icon-maskable-512.png", optimize=True)
    badge(96).save(OUT / "badge-96.png", optimize=True)


if __name__ == "__main__":
    main()
