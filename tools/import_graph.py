#!/usr/bin/env python3
"""The import graph of src/: which module uses which (`crate::` and `super::` paths,
comments and test modules ignored).

Prints the graph at two levels — files (each .rs file a room) and stages (the top-level
modules: folders and single files) — with their circles and floors (the longest chain
of imports below a room, plus one). Exits non-zero when either level has a circle or
more than MAX_FLOORS floors, when lib.rs's layout numbers are not the tree's, or when a
file or a function outgrows MAX_FILE_LINES / MAX_FN_LINES (declarative tables listed), or
when two module-level types share a name. Run from the repository root: python3 tools/import_graph.py
"""
import os
import re
import sys
from functools import lru_cache

MAX_FLOORS = 8
SRC = "src"
# Sizes a reader can hold: no source file (tests included) over MAX_FILE_LINES, no
# function over MAX_FN_LINES but the declarative tables listed here.
MAX_FILE_LINES = 800
MAX_FN_LINES = 120
TABLES = {
    ("src/telemetry/metrics.rs", "new"),  # one registration per metric
    ("src/decision/refused.rs", "each_refusal_knows_its_outcome_status_code_and_challenge"),
}


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    text = text.split("#[cfg(test)]")[0]
    return "\n".join(l.split("//")[0] for l in text.splitlines())


def files():
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs") and not root.startswith(os.path.join(SRC, "bin")):
                yield os.path.join(root, n)


def graph():
    mods = {module_of(p): p for p in files()}
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = strip(open(p).read())
        is_dir_mod = os.path.basename(p) in ("mod.rs", "lib.rs")
        here = m if is_dir_mod else m[:-1]
        for path in re.findall(r"\b((?:crate|super)(?:::\w+)+)", text):
            parts = path.split("::")
            if parts[0] == "crate":
                base, rest = (), parts[1:]
            else:
                base, rest = here, parts
                while rest and rest[0] == "super":
                    base, rest = base[:-1], rest[1:]
            target = base + tuple(rest)
            # the longest prefix that is a module
            while target and target not in mods:
                target = target[:-1]
            if target and target != m and not (m[: len(target)] == target):
                edges[m].add(target)
    return edges


def report(name, edges):
    nodes = sorted(edges)

    @lru_cache(None)
    def floor(n, stack=()):
        if n in stack:
            return 0
        return 1 + max((floor(t, stack + (n,)) for t in edges[n]), default=0)

    # circles: strongly connected components of more than one node (Tarjan)
    index, low, on, st, out, i = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = i[0]
        i[0] += 1
        st.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = st.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    floors = max((floor(n) for n in nodes), default=0)
    arrows = sum(len(e) for e in edges.values())
    print(f"{name}: {len(nodes)} rooms, {arrows} arrows, {floors} floors, {len(out)} circles")
    for c in out:
        print("  circle:", " <-> ".join("::".join(x) or "lib" for x in c))
    return len(nodes), floors, out


def sizes():
    """Files over MAX_FILE_LINES and functions over MAX_FN_LINES (rustfmt layout: a
    function ends at the first `}` at its own indentation)."""
    out = []
    for p in sorted(files()):
        lines = open(p).read().split("\n")
        if len(lines) - 1 > MAX_FILE_LINES:
            out.append(f"{p}: {len(lines) - 1} lines (at most {MAX_FILE_LINES})")
        for i, l in enumerate(lines):
            m = re.match(r"^(\s*)(?:pub(?:\([a-z]+\))? )?(?:async )?(?:const )?fn (\w+)", l)
            if not m:
                continue
            indent, name = len(m.group(1)), m.group(2)
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")):
                j += 1
            if j == len(lines) or lines[j].rstrip().endswith(";"):
                continue
            k = j + 1
            while k < len(lines) and not (
                lines[k].startswith(" " * indent + "}") and lines[k][indent] == "}"
            ):
                k += 1
            if k - i + 1 > MAX_FN_LINES and (p, name) not in TABLES:
                out.append(f"{p}:{i + 1}: fn {name} is {k - i + 1} lines (at most {MAX_FN_LINES})")
    return out


def duplicate_names():
    """Module-level types (struct, enum, trait, type alias) that share a name: each
    name is one thing in src/ (tests and function-local types aside)."""
    seen = {}
    for p in sorted(files()):
        for m in re.finditer(r"(?m)^(?:pub(?:\([a-z]+\))? )?(?:struct|enum|trait|type) (\w+)",
                             strip(open(p).read())):
            seen.setdefault(m.group(1), []).append(p)
    return [f"type {n} is defined in {', '.join(ps)}" for n, ps in sorted(seen.items())
            if len(ps) > 1 and n != "Result"]


def main():
    edges = graph()
    stages = {}
    for m, targets in edges.items():
        s = m[:1]
        stages.setdefault(s, set()).update(t[:1] for t in targets if t[:1] != s)
    stages.pop((), None)
    for s in stages.values():
        s.discard(())
    verbose = "-v" in sys.argv
    ok = True
    counted = []
    for name, g in (("files", edges), ("stages", stages)):
        rooms, floors, circles = report(name, g)
        counted += [rooms, floors]
        ok &= floors <= MAX_FLOORS and not circles
        if verbose and name == "stages":
            for s in sorted(g):
                print("  ", s[0], "->", ", ".join(sorted(t[0] for t in g[s])))
    # lib.rs's layout says the same numbers (so that it cannot drift from the tree).
    said = re.search(r"today: (\d+) files on (\d+) floors, (\d+) stages on (\d+)",
                     open(os.path.join(SRC, "lib.rs")).read().replace("\n//! ", " "))
    if not said or [int(x) for x in said.groups()] != counted:
        print(f"src/lib.rs: the layout should say 'today: {counted[0]} files on {counted[1]} floors, "
              f"{counted[2]} stages on {counted[3]}' (it says {said.group(0) if said else 'nothing'})")
        ok = False
    for problem in sizes() + duplicate_names():
        print(problem)
        ok = False
    sys.exit(0 if ok else 1)


main()
