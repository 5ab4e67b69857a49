#!/usr/bin/env bash
# doc_snippets.sh -- code snippets in the docs are copies of a program that ctest builds and runs,
# so they cannot rot: a fenced block right after a line `<!-- snippet: PATH -->` in README.md or
# docs/*.md must consist of lines of PATH, in the same order (leading and trailing blanks
# ignored).  Fails naming the document, the snippet and the first line not found.
#
#   tests/doc_snippets.sh <path to gmflow> [build dir]      (run from the repository root)
set -u
/usr/bin/python3 - README.md docs/*.md <<'PY'
import re, sys
fails = checked = 0
for doc in sys.argv[1:]:
    lines = open(doc, encoding="utf-8").read().split("\n")
    for i, line in enumerate(lines):
        m = re.search(r"<!-- snippet: (\S+) -->", line)
        if not m:
            continue
        path = m.group(1)
        j = i + 1
        if j >= len(lines) or not lines[j].strip().startswith("```"):
            print(f"FAIL: {doc}:{i + 1}: snippet marker not followed by a fenced block")
            fails += 1
            continue
        block = []
        for k in range(j + 1, len(lines)):
            if lines[k].strip().startswith("```"):
                break
            block.append(lines[k].strip())
        try:
            src = [l.strip() for l in open(path, encoding="utf-8")]
        except OSError as e:
            print(f"FAIL: {doc}:{i + 1}: {path}: {e.strerror}")
            fails += 1
            continue
        pos = 0
        for b in filter(None, block):
            try:
                pos = src.index(b, pos) + 1
            except ValueError:
                print(f"FAIL: {doc}:{i + 1}: line not in {path} (in this order): {b}")
                fails += 1
                break
        checked += 1
if fails:
    sys.exit(1)
if not checked:
    print("FAIL: no snippet markers found")
    sys.exit(1)
print(f"doc_snippets: PASS ({checked} snippet(s) match their programs)")
PY
