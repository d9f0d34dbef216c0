"""Body temperatures written in a message, in °C or °F, with or without units, and what they mean.

Bands and their advice come from `knowledge/temperature.csv` (38.0 °C is fever, as in ASTCT CRS grading).
A number is read as a temperature when it carries a unit ("38.5C", "101 °F", "39 degrees"), when a
temperature word stands in the same sentence ("temp 38.6", "fever of 101"), or when it is a decimal in
the range of body temperatures and nothing else claims it ("101.3"). Numbers followed by other units
("38.5 kg", "100 mg") or that fall outside body-temperature ranges are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.triage.knowledge import KnowledgeError, read_table
from bot.triage.result import Temperature

CELSIUS_RANGE = (34.0, 43.5)
FAHRENHEIT_RANGE = (93.0, 110.5)

_NUMBER = re.compile(
    r"(?<![\d.,/:])(?P<number>\d{2,3}(?:[.,]\d{1,2})?)(?![\d/:])"
    r"(?:\s*(?P<degree>°|º|˚|degrees?|degs?|deg)\.?)?"
    r"(?:\s*(?P<unit>celsius|centigrade|fahrenheit|c|f)\b)?",
    re.IGNORECASE,
)
_OTHER_UNIT = re.compile(
    r"\s*(?:%|kg|kgs|kilos?|lbs?|pounds?|g|mg|mcg|ml|mls|l|cm|mm|mmol|bpm|beats|breaths|hours?|hrs?|"
    r"mins?|minutes?|days?|weeks?|months?|years?|yrs?|y/?o|am|pm|times|x|"
    r"anos|años|kilos|libras|horas|dias|días|meses|semanas|veces|minutos)\b",
    re.IGNORECASE,
)
_CUE = re.compile(
    r"\b(?:temp|temps|temperature|temperatures|fever|feva|fevers|feverish|thermometer|therm|reading|read|"
    r"spiked?|spiking|running|ran|degrees?|celsius|fahrenheit|"
    # Spanish (accents folded by the normaliser): "tiene 38,5 de temperatura", "calentura de 39".
    r"temperatura|fiebre|calentura|grados?|termometro|febril|tiene|marca)\b|°|º",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;\n](?!\d)")


@dataclass(frozen=True)
class Band:
    """Temperatures from `min_celsius` up: the band's name, the catalogue term it means (if any), advice."""

    min_celsius: float
    name: str
    term: str
    advice: str


class Thermometer:
    """Reads the highest plausible body temperature from a text."""

    def __init__(self, bands: list[Band]) -> None:
        self._bands = sorted(bands, key=lambda band: band.min_celsius, reverse=True)

    @property
    def terms(self) -> frozenset[str]:
        """Catalogue terms a reading can stand for; a reading supersedes the same words without a number."""
        return frozenset(band.term for band in self._bands if band.term)

    def band(self, celsius: float) -> Band:
        for band in self._bands:
            if celsius >= band.min_celsius:
                return band
        return self._bands[-1]

    def read(self, text: str) -> Temperature | None:
        readings = [reading for reading in map(lambda m: self._reading(text, m), _NUMBER.finditer(text)) if reading]
        if not readings:
            return None
        return max(readings, key=lambda reading: reading.celsius)

    def _reading(self, text: str, match: re.Match[str]) -> Temperature | None:
        raw = match.group("number")
        value = float(raw.replace(",", "."))
        unit = (match.group("unit") or "").lower()[:1]
        explicit = bool(unit or match.group("degree"))
        if not explicit and _OTHER_UNIT.match(text, match.end()):
            return None
        if not unit:
            if CELSIUS_RANGE[0] <= value <= CELSIUS_RANGE[1]:
                unit = "c"
            elif FAHRENHEIT_RANGE[0] <= value <= FAHRENHEIT_RANGE[1]:
                unit = "f"
            else:
                return None
        celsius = value if unit == "c" else (value - 32.0) * 5.0 / 9.0
        if not CELSIUS_RANGE[0] <= celsius <= CELSIUS_RANGE[1]:
            return None
        decimal_point = "." in raw
        if not (explicit or decimal_point or self._cue_nearby(text, match.start(), match.end())):
            return None
        if "," in raw and not (explicit or self._cue_nearby(text, match.start(), match.end())):
            return None
        band = self.band(celsius)
        end = match.end()
        span = text[match.start() : end].rstrip()
        return Temperature(
            value=value,
            unit="°C" if unit == "c" else "°F",
            celsius=celsius,
            span=span,
            start=match.start(),
            end=match.start() + len(span),
            band=band.name,
            term=band.term,
            advice=band.advice,
        )

    @staticmethod
    def _cue_nearby(text: str, start: int, end: int) -> bool:
        ends_before = [m.end() for m in _SENTENCE_END.finditer(text, 0, start)]
        sentence_start = ends_before[-1] if ends_before else 0
        after = _SENTENCE_END.search(text, end)
        sentence_end = after.start() if after else len(text)
        return _CUE.search(text, sentence_start, sentence_end) is not None


def load(path: Path) -> Thermometer:
    bands = []
    for row in read_table(path, ("min_celsius", "band", "term", "advice")):
        try:
            minimum = float(row.required("min_celsius"))
        except ValueError as exc:
            raise row.error("min_celsius", f"is {row.get('min_celsius')!r}; a number of degrees Celsius") from exc
        bands.append(Band(minimum, row.required("band"), row.get("term"), row.required("advice")))
    if not bands:
        raise KnowledgeError(f"{path}: no temperature bands")
    return Thermometer(bands)
