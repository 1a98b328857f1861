#!/usr/bin/python3
"""README.md's Layout section against the tree.

Every top-level source directory has a line of its own in the Layout block
(`dir/` at the start of a line); every .c file under agent/, controller/,
cli/ and lib/ is named in its directory's part of the block; and every
directory and C file (*.c, *.h) the block names exists. Prints "ok - ..."
or "not ok - ..." per check, then "N passed, N failed".
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE_DIRS = ["agent", "controller", "cli", "lib"]
passed = failed = 0


def check(problems, what):
    """One check: ok when PROBLEMS is empty, else each problem on a line."""
    global passed, failed
    if not problems:
        passed += 1
        print("ok - " + what)
    else:
        failed += 1
        print("not ok - " + what)
        for p in problems:
            print("    " + p)


def top_dirs():
    """The top-level directories git tracks (without git: those present, but
    build directories and hidden ones)."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True, check=True).stdout
        dirs = {line.split("/")[0] for line in out.splitlines() if "/" in line}
    except (OSError, subprocess.CalledProcessError):
        dirs = {d for d in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, d))}
    return sorted(d for d in dirs if not d.startswith((".", "build")))


def layout_block():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(r"^## Layout\n.*?^```\n(.*?)^```", text, re.S | re.M)
    if not m:
        check(False, "README.md has a ## Layout section with a ``` block")
        sys.exit(1)
    return m.group(1)


def sections(block):
    """{top-level path: its lines}: a line starting at column 0 with a path
    opens a part; indented lines continue it."""
    parts, cur = {}, None
    for line in block.splitlines():
        m = re.match(r"(\S+/)", line)
        if m:
            cur = m.group(1)
            parts[cur] = [line[len(cur):]]
        elif cur:
            parts[cur].append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


block = layout_block()
parts = sections(block)
listed_top = {p.split("/")[0] for p in parts}

check(["no line for %s/" % d for d in top_dirs() if d not in listed_top],
      "Layout has a line for every top-level directory")
missing = [p for p in parts if not os.path.isdir(os.path.join(ROOT, p))]
for p, text in parts.items():
    # Subdirectories a part names (tests/: unit/, cli/, ...).
    for sub in re.findall(r"(?<![\w/.-])([a-z][\w-]*/)(?=[\s,)(]|$)", text):
        if not (os.path.isdir(os.path.join(ROOT, p, sub)) or os.path.isdir(os.path.join(ROOT, sub))):
            missing.append(p + sub)
check(["%s does not exist" % p for p in missing], "every directory Layout names exists")

for d in CODE_DIRS:
    text = parts.get(d + "/", "")
    named = set(re.findall(r"(?<![\w/.-])[\w.-]+\.[ch]\b", text))
    files = sorted(f for f in os.listdir(os.path.join(ROOT, d)) if f.endswith(".c"))
    check(["%s/%s is not named" % (d, f) for f in files if f not in named],
          "Layout names every .c file under %s/ (%d)" % (d, len(files)))
    check(["%s/%s does not exist" % (d, f) for f in sorted(named) if not os.path.isfile(os.path.join(ROOT, d, f))],
          "every C file Layout names under %s/ exists (%d)" % (d, len(named)))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
