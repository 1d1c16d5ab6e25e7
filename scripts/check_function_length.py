#!/usr/bin/env python3
"""Lists C/C++ functions longer than a limit (default 80 lines), by brace matching.

Usage: check_function_length.py [--max N] PATH...   (files or directories; *.c, *.cpp, *.h, *.hpp)
Exit status 1 if any function is longer than the limit, unless it is marked table-like: a comment
`// table-like: WHY` on the line before its header exempts it (and is listed as such).

Heuristic, not a parser: comments, string and character literals are blanked first; then every
`{` whose preceding text (back to the previous `;`, `{` or `}`) looks like a function header
(ends in `)` plus qualifiers, or a constructor's initialiser list) opens a function, unless that
text starts with a control keyword or is a lambda inside another function.
"""
import argparse
import os
import re
import sys

CONTROL = re.compile(r"^\s*(if|for|while|switch|catch|do|else|try|return|case)\b")
QUALIFIERS = r"(\s*(const|noexcept|override|final|mutable|volatile|&|&&|->\s*[\w:<>,\s*&]+))*\s*$"
HEADER_END = re.compile(r"\)" + QUALIFIERS)


def blank(text):
    """Replaces comments and literals by spaces, keeping newlines (so line numbers hold)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                out.append(c)
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum():
            out.append(c)  # a digit separator (1'000'000), not a character literal
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * max(0, j - i - 2) + (c if j - i >= 2 else ""))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(text):
    """Yields (name, first_line, last_line) of each outermost function body."""
    code = blank(text)
    stack = []  # for each open brace: (is_function, start_line, name)
    seg_start = 0
    line = 1
    in_function = 0
    for i, c in enumerate(code):
        if c == "\n":
            line += 1
        elif c in ";":
            seg_start = i + 1
        elif c == "{":
            seg = code[seg_start:i]
            is_fn = False
            name = ""
            if in_function == 0 and "(" in seg and not CONTROL.match(seg):
                flat = " ".join(seg.split())
                # A constructor's initialiser list: "X(...) : a_(..), b_(..)"
                head = re.split(r"\)\s*:(?!:)", flat, maxsplit=1)[0] + ")" if re.search(r"\)\s*:(?!:)", flat) else flat
                if HEADER_END.search(head) and "=" not in head.split("(")[0]:
                    is_fn = True
                    m = re.search(r"([~\w:]+)\s*\(", head)
                    name = m.group(1) if m else "?"
            start_line = line - seg[::-1].count("\n") if is_fn else line
            # the header's first non-blank line
            if is_fn:
                lines = seg.split("\n")
                k = 0
                while k < len(lines) and not lines[k].strip():
                    k += 1
                start_line = line - (len(lines) - 1 - k)
            stack.append((is_fn, start_line, name))
            if is_fn:
                in_function += 1
            seg_start = i + 1
        elif c == "}":
            if stack:
                is_fn, start, name = stack.pop()
                if is_fn:
                    in_function -= 1
                    yield name, start, line
            seg_start = i + 1


def table_like(lines, first_line):
    prev = lines[first_line - 2] if first_line >= 2 else ""
    return "table-like:" in prev


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=80)
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    files = []
    for p in a.paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, f) for f in names
                          if f.endswith((".c", ".cpp", ".h", ".hpp"))]
        else:
            files.append(p)
    bad = 0
    for f in sorted(files):
        text = open(f, encoding="utf-8", errors="replace").read()
        lines = text.split("\n")
        for name, first, last in functions(text):
            n = last - first + 1
            if n > a.max:
                exempt = table_like(lines, first)
                print(f"{f}:{first}: {name}: {n} lines{' (table-like, exempt)' if exempt else ''}")
                bad += 0 if exempt else 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
