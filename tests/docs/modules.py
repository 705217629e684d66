"""Every module of every crate is listed in docs/ARCHITECTURE.md.

`python3 tests/docs/modules.py` checks the "Modules" table against the
source tree; `--print` prints a fresh table from each module's first doc
sentence, to paste and edit. Test-only modules (`#[cfg(test)] mod x;`) are
not listed.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
DECL = re.compile(r"^\s*(#\[cfg\(test\)\]\s*)?(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+);", re.M)


def modules(crate: Path) -> list[str]:
    """Paths (from the crate's src/) of the crate's non-test modules."""
    src = crate / "src"
    found = []
    roots = [p for p in (src / "lib.rs", src / "main.rs") if p.exists()]
    todo = [(root, src) for root in roots]
    while todo:
        file, folder = todo.pop()
        text = file.read_text()
        for match in DECL.finditer(re.sub(r"#\[cfg\(test\)\]\s*\n", "#[cfg(test)] ", text)):
            if match.group(1):
                continue
            name = match.group(2)
            for candidate, inner in (
                (folder / f"{name}.rs", folder / name),
                (folder / name / "mod.rs", folder / name),
            ):
                if candidate.exists():
                    found.append(str(candidate.relative_to(src)))
                    todo.append((candidate, inner))
                    break
    return sorted(found)


def summary(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("//!"):
            break
        text = line[3:].strip()
        if not text:
            break
        lines.append(text)
    sentence = " ".join(lines).split(". ")[0].rstrip(".")
    sentence = re.sub(r"\[(`[^`]+`)\]", r"\1", sentence)  # rustdoc links
    if len(sentence) > 120:
        sentence = sentence[:120].rsplit(" ", 1)[0] + " …"
    return sentence.replace("|", "\\|")


def main() -> int:
    crates = sorted(p for p in (ROOT / "crates").iterdir() if (p / "Cargo.toml").exists())
    if "--print" in sys.argv:
        print("| module | what it is for |\n|---|---|")
        for crate in crates:
            for module in modules(crate):
                print(f"| `{crate.name}/{module}` | {summary(crate / 'src' / module)} |")
        return 0
    doc = DOC.read_text()
    listed = set(re.findall(r"^\| `([\w/.-]+\.rs)` \|", doc, re.M))
    expected = {f"{c.name}/{m}" for c in crates for m in modules(c)}
    missing = sorted(expected - listed)
    stale = sorted(listed - expected)
    for name in missing:
        print(f"docs/ARCHITECTURE.md does not list the module {name}: add a row for it")
    for name in stale:
        print(f"docs/ARCHITECTURE.md lists {name}, which is no module: remove or rename it")
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
