"""What the synthetic scene-text set writes, and in which typefaces.

Words are single tokens, as in TextOCR and ICDAR 2015 annotations (one box per word): sign
words, shop-name parts, numbers, prices, times, phone fragments, codes, in mixed case. All
strings are printable ASCII without commas or spaces (ICDAR 2015 lines are comma separated)
and never the illegible markers ``"."`` / ``"###"``. Typefaces: every TrueType/OpenType font
under ``/usr/share/fonts`` that renders printable ASCII, plus Pillow's built-in font (so a
machine without system fonts still has one).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BUILTIN_FONT = "<pillow-builtin>"
FONT_ROOT = "/usr/share/fonts"
_CHARSET = "".join(chr(c) for c in range(33, 127))

SIGN_WORDS = (
    "OPEN CLOSED EXIT ENTRANCE STOP SALE PARKING NO SMOKING PUSH PULL TOILETS POLICE TAXI "
    "BUS STATION PHARMACY HOTEL BANK ATM CAFE BAR RESTAURANT BAKERY MARKET PIZZA COFFEE "
    "SHOP STORE CENTER STREET AVENUE ROAD SQUARE PLAZA MUSEUM LIBRARY SCHOOL HOSPITAL "
    "EMERGENCY DANGER CAUTION WARNING ONE WAY KEEP RIGHT LEFT AREA ONLY PRIVATE STAFF "
    "OFFICE TICKETS INFORMATION WELCOME THANK YOU FREE WIFI NEW HOURS DAILY SPECIAL "
    "MENU BREAKFAST LUNCH DINNER FRESH HOT COLD DRINKS BEER WINE FOOD GRILL KITCHEN "
    "FASHION SHOES BOOKS MUSIC CINEMA THEATRE GALLERY FLOWERS FRUIT DELI SUSHI NOODLES "
    "BURGER TACOS SALON BARBER LAUNDRY REPAIR SERVICE GARAGE MOTEL INN SUITES LOBBY "
    "FLOOR LEVEL GATE PLATFORM TRAIN METRO SUBWAY AIRPORT ARRIVALS DEPARTURES BAGGAGE "
    "SECURITY CHECK IN OUT UP DOWN NORTH SOUTH EAST WEST CITY PARK ZONE LIMIT SPEED "
    "SCHOOL CROSSING YIELD DETOUR CLOSED AHEAD WORK SLOW LOADING DELIVERY VISITORS "
    "MEMBERS RESERVED DISCOUNT CLEARANCE OFF BUY GET BEST PRICE QUALITY SINCE EST "
    "AND THE OF FOR WITH BY AT TO ON"
).split()

NAME_WORDS = (
    "Joe's Maria's Golden Dragon Blue Moon Sunrise Royal Green Leaf Corner Village Urban "
    "Harbor Lucky Star Silver Grand Central Oak Maple Pine River Ocean Sunset Little Big "
    "Happy Fox Bear Eagle Lion Rose Lotus Jade Ruby Crown Bridge Garden Valley Hill "
    "Brooklyn Paris Milano Tokyo Berlin London Victoria Albert Kings Queens Market Union "
    "Liberty Pacific Atlantic Metro Express Deluxe Prime Classic Vintage Modern Nova "
    "Alpha Delta Omega Apex Zen Oasis Bistro Trattoria Cantina Brasserie Boutique "
    "Emporium Outfitters Supply Hardware Pharma Optics Dental Clinic Studio Fitness Yoga "
    "Auto Tires Motors Electric Plumbing Realty Insurance Travel Tours Books&Co McDonald "
    "O'Reilly Smith Johnson Garcia Nguyen Kim Patel Cohen Rossi Muller"
).split()

LOWER_WORDS = (
    "open daily fresh coffee tea bakery deli since est hours sale new the and of by "
    "menu espresso latte organic local craft homemade kitchen grill street market "
    "shop store outlet center welcome please thank you exit entrance parking only"
).split()

UNITS = ("km", "m", "mi", "kg", "lb", "oz", "ml", "L", "GB", "mph", "km/h")
CURRENCIES = ("$", "$", "$", "")  # mostly dollars, as in TextOCR (ASCII only: every font has it)


def _number(rng: np.random.Generator) -> str:
    digits = int(rng.choice([1, 2, 2, 3, 3, 4]))
    return str(int(rng.integers(10 ** (digits - 1) if digits > 1 else 0, 10**digits)))


def _price(rng: np.random.Generator) -> str:
    cur = str(rng.choice(CURRENCIES)) if rng.random() < 0.8 else ""
    whole = int(rng.integers(0, 200))
    cents = str(rng.choice(["99", "95", "49", "50", "00", "25", "75"]))
    return f"{cur}{whole}.{cents}" if rng.random() < 0.8 else f"{cur}{whole}"


def _time(rng: np.random.Generator) -> str:
    h, m = int(rng.integers(1, 13)), str(rng.choice(["00", "15", "30", "45"]))
    suffix = str(rng.choice(["", "AM", "PM", "am", "pm"]))
    return f"{h}:{m}{suffix}"


def _phone(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(200, 1000))}-{int(rng.integers(0, 10000)):04d}"


def _code(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    n_letters = int(rng.integers(1, 4))
    head = "".join(letters[int(i)] for i in rng.integers(0, len(letters), n_letters))
    sep = str(rng.choice(["", "-", ""]))
    return f"{head}{sep}{int(rng.integers(1, 1000))}"


def _misc(rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return f"{int(rng.integers(5, 80))}%"
    if kind == 1:
        return f"{int(rng.integers(1, 500))}{rng.choice(UNITS)}"
    if kind == 2:
        return f"#{int(rng.integers(1, 100))}"
    if kind == 3:
        return str(int(rng.integers(1950, 2025)))
    return f"No.{int(rng.integers(1, 100))}"


def _recase(word: str, rng: np.random.Generator) -> str:
    """Mixed case as on real signs: UPPER, Title, lower, or as written."""
    r = rng.random()
    if r < 0.35:
        return word.upper()
    if r < 0.65:
        return word[:1].upper() + word[1:].lower()
    if r < 0.8:
        return word.lower()
    return word


def random_word(rng: np.random.Generator) -> str:
    """One scene-text token drawn from the built-in vocabulary (deterministic for ``rng``)."""
    r = rng.random()
    if r < 0.35:
        return _recase(str(rng.choice(SIGN_WORDS)), rng)
    if r < 0.6:
        return (
            str(rng.choice(NAME_WORDS))
            if rng.random() < 0.7
            else _recase(str(rng.choice(NAME_WORDS)), rng)
        )
    if r < 0.67:
        return str(rng.choice(LOWER_WORDS))
    makers = (_number, _price, _price, _time, _phone, _code, _misc)
    return makers[int(rng.integers(0, len(makers)))](rng)


def _renders_charset(face: ImageFont.FreeTypeFont) -> bool:
    """True when every printable ASCII glyph differs from the font's missing-glyph box."""

    def ink(ch: str) -> bytes:
        im = Image.new("L", (40, 40))
        ImageDraw.Draw(im).text((4, 4), ch, font=face, fill=255)
        return im.tobytes()

    missing = ink("\uffff")
    return all(ink(ch) != missing for ch in _CHARSET)


@functools.lru_cache(maxsize=4)
@functools.lru_cache(maxsize=16)
def find_fonts(root: str = FONT_ROOT) -> tuple[str, ...]:
    """Sorted usable TrueType/OpenType fonts under ``root`` (folders separated by ``:``;
    ``""`` = ``FONT_ROOT``) plus Pillow's built-in font."""
    found = []
    for folder in (root or FONT_ROOT).split(":"):
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() not in (".ttf", ".otf"):
                continue
            try:
                if _renders_charset(ImageFont.truetype(str(path), 24)):
                    found.append(str(path))
            except OSError:
                continue  # unreadable font file: not a candidate
    return (*found, BUILTIN_FONT)


@functools.lru_cache(maxsize=2048)
def font(spec: str, size: int) -> ImageFont.FreeTypeFont:
    """Font ``spec`` (a path from ``find_fonts`` or ``BUILTIN_FONT``) at ``size`` px."""
    if spec == BUILTIN_FONT:
        return ImageFont.load_default(size=size)  # type: ignore[return-value]
    return ImageFont.truetype(spec, size)


@functools.lru_cache(maxsize=256)
def cap_ratio(spec: str) -> float:
    """Cap height of ``H`` per unit of font size."""
    top, bottom = font(spec, 100).getbbox("H")[1::2]
    return max(bottom - top, 1) / 100.0
