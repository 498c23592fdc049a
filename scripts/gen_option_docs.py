#!/usr/bin/env python3
"""Write the option tables into docs/ from the library's own tables.

Every consumer's table (`fmd options CONSUMER --markdown`) sits in exactly one
docs/*.md file between the markers

    <!-- options:CONSUMER -->
    ...
    <!-- /options:CONSUMER -->

This script rewrites what is between them; with --check it changes nothing
and exits 1 when a block differs from the library, is missing, or appears
twice (the test `docs_options` runs that).

    python3 scripts/gen_option_docs.py [--fmd build/bin/fmd] [--check]
"""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def main(argv):
    check = "--check" in argv
    fmd = str(REPO / "build" / "bin" / "fmd")
    if "--fmd" in argv:
        fmd = argv[argv.index("--fmd") + 1]
    consumers = [l.rstrip(":") for l in subprocess.run(
        [fmd, "options"], check=True, capture_output=True, text=True).stdout.splitlines()
        if l and not l.startswith(" ")]
    found = {c: [] for c in consumers}
    bad = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        new = text
        for c in consumers:
            pat = re.compile(r"(<!-- options:%s -->\n)(.*?)(<!-- /options:%s -->)" % (re.escape(c), re.escape(c)), re.S)
            hits = pat.findall(text)
            if not hits:
                continue
            found[c] += [md.name] * len(hits)
            table = subprocess.run([fmd, "options", c, "--markdown"], check=True,
                                   capture_output=True, text=True).stdout
            new = pat.sub(lambda m: m.group(1) + table + m.group(3), new)
        if new != text:
            if check:
                bad.append(f"{md.relative_to(REPO)}: an option table differs from `fmd options`")
            else:
                md.write_text(new)
                print(f"wrote {md.relative_to(REPO)}")
    for c, where in found.items():
        if len(where) != 1:
            bad.append(f"table '{c}' appears {len(where)} times in docs/ ({', '.join(where) or 'nowhere'}); "
                       f"it belongs in exactly one file between <!-- options:{c} --> markers")
    for b in bad:
        print(b, file=sys.stderr)
    if bad and check:
        print("run: python3 scripts/gen_option_docs.py", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
