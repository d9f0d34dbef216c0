"""The Spanish replies of the domain, written from `knowledge/translations.csv`.

`knowledge/translations.csv` keeps every patient-facing English text beside its Spanish translation (key,
english, spanish), so that a bilingual reviewer checks them side by side in one file. The domain's
responses take their Spanish variation from it: each response gets a variation conditioned on the slot
`language` being "es", right after its English text. `python -m tools.translations --write` rewrites those
variations in domain.yml; `--check` (and the tests) fail when domain.yml and the file disagree.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "knowledge" / "translations.csv"
DOMAIN = ROOT / "domain.yml"
RESPONSE = "response:"
_CONDITION = "    - condition:\n        - type: slot\n          name: language\n          value: es\n"


def spanish_responses(path: Path = TRANSLATIONS) -> dict[str, tuple[str, str]]:
    """Response name -> (English, Spanish), for every response the file translates."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    found = {}
    for number, row in enumerate(rows, start=2):
        if row["key"].startswith(RESPONSE):
            if not row["spanish"].strip():
                raise ValueError(f"{path}, row {number}: {row['key']} has no Spanish text")
            found[row["key"][len(RESPONSE) :]] = (row["english"], row["spanish"])
    return found


def rewritten(domain: str, responses: dict[str, tuple[str, str]]) -> str:
    """domain.yml's text with each translated response's Spanish variation (old ones replaced)."""
    lines = domain.splitlines(keepends=True)
    out: list[str] = []
    index = 0
    current = ""
    while index < len(lines):
        line = lines[index]
        if line.startswith("    - condition:"):  # an earlier Spanish variation: dropped, written again below
            index += 5
            continue
        out.append(line)
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            current = stripped[:-1]
        elif line.startswith("    - text:") and current in responses:
            out.append(_CONDITION + f"      text: {json.dumps(responses[current][1], ensure_ascii=False)}\n")
        index += 1
    return "".join(out)


def stale_english(domain: str, responses: dict[str, tuple[str, str]]) -> list[str]:
    """Responses whose English in domain.yml is not the English the translation was made from."""
    import yaml

    texts = yaml.safe_load(domain)["responses"]
    stale = []
    for name, (english, _) in responses.items():
        plain = [v.get("text") for v in texts.get(name, []) if not v.get("condition")]
        if english not in plain:
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite domain.yml's Spanish variations")
    args = parser.parse_args(argv)
    domain = DOMAIN.read_text(encoding="utf-8")
    responses = spanish_responses()
    stale = stale_english(domain, responses)
    if stale:
        print(f"knowledge/translations.csv translates other English than domain.yml says for: {', '.join(stale)}")
        return 1
    wanted = rewritten(domain, responses)
    if args.write:
        DOMAIN.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != domain:
        print(
            "domain.yml's Spanish replies differ from knowledge/translations.csv: python -m tools.translations --write"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
