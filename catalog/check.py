#!/usr/bin/env python3
"""Checks every catalog file in catalog/ against catalog/schema.json (JSON
Schema draft 2020-12), entry by entry, and that names are unique.

The schema is what `streamspace templates schema` prints (derived from the
API's OpenAPI document; crates/cli/tests/catalog.rs checks it is current),
so an entry that passes here has the shape the server accepts; the server's
own checks (image references, quantities) run in the import tests.

It also checks that the docs tell the repository's catalog's true size: every
"N curated templates" in DOCS must be the number of entries in catalog.yaml
(they said 24 while it held 25).

Usage: catalog/check.py [FILE...]   (default: every catalog/*.yaml and *.json)
Needs python3-jsonschema and python3-yaml (scripts/install-deps.sh).
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "catalog.yaml"
# The pages that say how many templates catalog.yaml holds, as "N curated
# templates" (a line break may fall anywhere in the phrase).
DOCS = [HERE.parent / "README.md", HERE.parent / "docs" / "CATALOG.md"]
COUNT = re.compile(r"(\d+)\s+curated\s+templates")


def load(path):
    with path.open(encoding="utf-8") as f:
        return json.load(f) if path.suffix == ".json" else yaml.safe_load(f)


def problems(schema, path):
    catalog = load(path)
    validator = jsonschema.Draft202012Validator(schema)
    found = []
    for error in validator.iter_errors(catalog):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{path.name}: {where}: {error.message}")
    names = {}
    for i, entry in enumerate(catalog.get("templates") or []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name in names:
            first = names[name]
            found.append(f"{path.name}: templates/{i}/name: {name!r} is also templates/{first}")
        names.setdefault(name, i)
    return found, len(names)


def count_problems(count):
    """Where DOCS give catalog.yaml's size wrong, or no longer give it at all
    (so a rewording cannot silently end this check)."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        claims = list(COUNT.finditer(text))
        if not claims:
            found.append(f"{doc.name}: no longer says how many curated templates catalog.yaml has")
        for claim in claims:
            if int(claim.group(1)) != count:
                line = text.count("\n", 0, claim.start()) + 1
                found.append(
                    f"{doc.name}:{line}: says {claim.group(1)} curated templates, "
                    f"{CATALOG.name} has {count}"
                )
    return found


def main(argv):
    schema = json.loads((HERE / "schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    files = [Path(a) for a in argv] or sorted(
        p
        for p in HERE.iterdir()
        if p.suffix in (".yaml", ".yml", ".json") and p.name != "schema.json"
    )
    if not files:
        print("catalog/check.py: no catalog files found", file=sys.stderr)
        return 1
    failed = False
    for path in files:
        found, count = problems(schema, path)
        for line in found:
            print(line, file=sys.stderr)
        failed |= bool(found)
        print(f"{path.name}: {count} templates, {'INVALID' if found else 'valid'}")
        if path.resolve() == CATALOG:
            wrong = count_problems(count)
            for line in wrong:
                print(line, file=sys.stderr)
            failed |= bool(wrong)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
