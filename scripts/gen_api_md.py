#!/usr/bin/env python3
"""Generate docs/api.md from include/fmd.h: every declaration with the comment
that precedes it, grouped by the header's sections.  The header is the
manual; this makes it browsable.  tests/python/test_docs_api.py fails when a
function exported by libfmd.so or declared in fmd.h is missing from api.md,
so rerun this after changing the header:

    python3 scripts/gen_api_md.py            # writes docs/api.md
    python3 scripts/gen_api_md.py --check    # exit 1 when docs/api.md is stale
"""
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = REPO / "include" / "fmd.h"
OUT = REPO / "docs" / "api.md"

INTRO = """# libfmd C API reference

Generated from `include/fmd.h` by `scripts/gen_api_md.py` (do not edit by
hand: edit the header's comments and rerun it).  The header is the manual;
this page is the same text grouped by section, one heading per function.

Conventions that hold for every function (from the top of `fmd.h`):

- every exported symbol starts with `fmd_`, every macro with `FMD_`;
- objects are opaque handles made by `fmd_<object>_create` / `_open` / `_load`
  and released by `fmd_<object>_destroy`, which accepts NULL;
- every call that can fail returns an `fmd_status`; on failure
  `fmd_last_error()` gives a thread-local message naming the bad argument,
  row, key, file offset or tensor; the library never aborts or exits;
- out-parameters come last and are written only on success;
- the library never frees memory the caller owns;
- hyper-parameters travel in an `fmd_options` object (typed setters by name);
- distinct handles may be used from distinct threads, one handle from one
  thread at a time.

Python names for each call are in [python.md](python.md); the ideas behind
them in [concepts.md](concepts.md).
"""


def clean_comment(text):
    body = text.strip()
    body = re.sub(r"^/\*+", "", body)
    body = re.sub(r"\*+/$", "", body)
    lines = []
    for line in body.split("\n"):
        line = re.sub(r"^\s*\* ?", "", line.rstrip())
        lines.append(line)
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines:
        lines[0] = lines[0].lstrip()
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def parse(src):
    """Yield ('section', title) and ('entry', comment, code) items."""
    # cut the file preamble (the big comment before #ifndef) and the guards
    start = src.index("#ifndef FMD_H")
    src = src[start:]
    pending_comment = None
    code = []
    tok = re.compile(r"/\*.*?\*/|[^\n]*\n", re.S)
    items = []

    def flush():
        nonlocal pending_comment, code
        text = "".join(code).strip("\n")
        if text.strip() or pending_comment:
            items.append(("entry", pending_comment, text))
        pending_comment, code = None, []

    depth_skip = ("#ifndef", "#define FMD_H", "#include", "#ifdef __cplusplus", "extern \"C\"",
                  "}", "#endif", "#if defined", "#elif", "#else", "#define FMD_API")
    for m in tok.finditer(src):
        t = m.group(0)
        if t.startswith("/*"):
            title = re.match(r"/\*\s*====\s*(.*?)\s*====\s*\*/", t)
            if title:
                flush()
                if not title.group(1).startswith("END"):
                    items.append(("section", title.group(1)))
                continue
            box = re.match(r"/\*\s*-{6,}\s*\n\s*\*\s*(.*?)\n", t)
            if box:
                flush()
                first = box.group(1).strip()
                items.append(("section", first.split(".")[0].split(":")[0]))
                rest = clean_comment(re.sub(r"^/\*\s*-+\s*\n", "/*", t))
                rest = "\n".join(l for l in rest.split("\n")
                                 if not re.fullmatch(r"-+", l.strip()) and l.strip() != first)
                if rest.strip():
                    items.append(("entry", rest, ""))
                continue
            if t.startswith("/* ----"):
                flush()
                items.append(("section", re.sub(r"[-/*]", "", t).strip()))
                continue
            if code and "".join(code).strip():
                # a comment after code: a trailing field comment stays inside the code
                if "\n" not in t and not "".join(code).endswith("\n\n"):
                    code.append(t)
                    continue
                flush()
            if pending_comment and not "".join(code).strip():
                pending_comment += "\n\n" + clean_comment(t)
            else:
                pending_comment = clean_comment(t)
            continue
        s = t.strip()
        if not s:
            if code and "".join(code).strip() and not in_struct("".join(code)):
                code.append(t)
            continue
        if any(s.startswith(p) for p in depth_skip) and not in_struct("".join(code)):
            continue
        code.append(t)
    flush()
    return items


def in_struct(text):
    return text.count("{") > text.count("}")


def functions(code):
    flat = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    return re.findall(r"FMD_API\s+[^;{]*?\b(fmd_\w+)\s*\(", flat)


def render(items):
    out = [INTRO]
    for it in items:
        if it[0] == "section":
            out.append(f"\n## {it[1].strip().rstrip('.').capitalize() if it[1].isupper() else it[1].strip()}\n")
            continue
        _, comment, code = it
        names = functions(code)
        if names:
            out.append("\n### " + ", ".join(f"`{n}`" for n in names) + "\n")
        if comment:
            out.append(comment + "\n")
        if code.strip():
            out.append("```c\n" + re.sub(r"\n{3,}", "\n\n", code.strip("\n")) + "\n```\n")
    return "\n".join(out).replace("\n\n\n", "\n\n")


def main():
    text = render(parse(HEADER.read_text()))
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/api.md is stale: run python3 scripts/gen_api_md.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
