#!/usr/bin/python3
"""Check that policy-schema/policy.schema.json and the C validator agree.

Usage: /usr/bin/python3 tests/schema/check_schema.py [--schema-only] [FILE...]

With no FILE, checks every examples/*/policy.json and every
tests/fixtures/policy/{valid,invalid,invalid-semantic}/*.json (relative to the
repository root, found from this script's location). What each file must do
follows from where it lives:

  examples/, .../valid/        schema valid,   C valid   (exit 0)
  .../invalid/                 schema invalid, C invalid (exit 2)
  .../invalid-semantic/        schema valid,   C invalid (exit 2)
                               (errors the schema cannot express)

With no FILE it also checks, against the schema alone, the policy inline
in every tests/fixtures/eval/*.json scenario (the evaluator tests hold
them valid in C: they compile them), and, against both, documents made
here at the size limits (100,000 cidrs or excepts in a group: valid;
one more: invalid), too big to keep as fixtures.

"C" is `$BULKHEAD_CLI policy validate FILE` (default build/cli/bulkhead under
the repository root). --schema-only skips it. A file that is not valid JSON
counts as schema-invalid. Prints `ok FILE` or `FAIL FILE: ...` per file, then
`N passed, N failed`; exits 1 if any failed.

Needs Debian's python3-jsonschema (>= 4, draft 2020-12): run it with
/usr/bin/python3.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

import jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "policy-schema", "policy.schema.json")
FIXTURES = os.path.join("tests", "fixtures", "policy")

# (location, schema valid?, C valid?)
EXPECT = {
    "examples": (True, True),
    "valid": (True, True),
    "invalid": (False, False),
    "invalid-semantic": (True, False),
}


def default_files():
    pats = [os.path.join("examples", "*", "policy.json")]
    pats += [os.path.join(FIXTURES, d, "*.json") for d in ("valid", "invalid", "invalid-semantic")]
    files = []
    for p in pats:
        files += sorted(glob.glob(os.path.join(ROOT, p)))
    return files


def location(path):
    """Which expectation applies to PATH, or None."""
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(ROOT))
    parts = rel.split(os.sep)
    if parts[0] == "examples":
        return "examples"
    fix = FIXTURES.split(os.sep)
    if parts[: len(fix)] == fix and len(parts) == len(fix) + 2 and parts[len(fix)] in EXPECT:
        return parts[len(fix)]
    return None


def display(path):
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return path if rel.startswith("..") else rel


def reject_constant(name):
    raise ValueError("not JSON: " + name)


def schema_check(validator, path):
    """(valid?, first error message or None)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, parse_constant=reject_constant)
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        return False, "not valid JSON: %s" % e
    err = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if err is None:
        return True, None
    ptr = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in err.absolute_path)
    return False, "%s: %s" % (ptr or "/", err.message)


def c_check(cli, path):
    """(result, detail): result is True (exit 0), False (exit 2) or a string."""
    try:
        r = subprocess.run([cli, "policy", "validate", path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except FileNotFoundError:
        return "not run (%s not found)" % cli, None
    except OSError as e:
        return "not run (%s)" % e, None
    except subprocess.TimeoutExpired:
        return "timeout", None
    lines = r.stderr.decode("utf-8", "replace").strip().splitlines()
    detail = lines[0] if lines else None
    if r.returncode == 0:
        return True, detail
    if r.returncode == 2:
        return False, detail
    return "exit %d" % r.returncode, detail


MAX_NETWORK_ENTRIES = 100000


def generated():
    """(name, document, schema valid?, C valid?) at the size limits."""
    def hosts(n, odd):
        return ["2001:db8::%x:%x/128" % (i >> 15, (2 * i + odd) & 0xffff) for i in range(n)]

    def doc(group):
        return {"version": 1, "groups": {"g": group},
                "policies": [{"name": "p", "applies_to": {"labels": {}}, "ingress": [{"from": ["g"]}]}]}
    for n in (MAX_NETWORK_ENTRIES, MAX_NETWORK_ENTRIES + 1):
        ok = n <= MAX_NETWORK_ENTRIES
        yield ("%d excepts" % n, doc({"cidrs": ["2001:db8::/32"], "except": hosts(n, 1)}), ok, ok)
        yield ("%d cidrs" % n, doc({"cidrs": hosts(n, 0)}), ok, ok)


def word(v):
    if v is True:
        return "valid"
    if v is False:
        return "invalid"
    return v


def main(argv):
    schema_only = False
    args = []
    for a in argv:
        if a == "--schema-only":
            schema_only = True
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        else:
            args.append(a)

    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    cli = os.environ.get("BULKHEAD_CLI") or os.path.join(ROOT, "build", "cli", "bulkhead")
    files = args or default_files()
    passed = failed = 0
    for path in files:
        name = display(path)
        loc = location(path)
        if loc is None:
            print("FAIL %s: not under examples/ or %s/{valid,invalid,invalid-semantic}/, "
                  "so nothing is expected of it" % (name, FIXTURES))
            failed += 1
            continue
        want_schema, want_c = EXPECT[loc]
        got_schema, schema_err = schema_check(validator, path)
        if schema_only:
            got_c, c_err = want_c, None
        else:
            got_c, c_err = c_check(cli, path)
        if got_schema == want_schema and got_c is want_c:
            print("ok %s" % name)
            passed += 1
            continue
        msg = "FAIL %s: schema said %s, C said %s, expected schema %s and C %s" % (
            name, word(got_schema), word(got_c), word(want_schema), word(want_c))
        if schema_only:
            msg = "FAIL %s: schema said %s, expected schema %s" % (
                name, word(got_schema), word(want_schema))
        notes = []
        if got_schema != want_schema and schema_err:
            notes.append("schema: " + schema_err)
        if got_c is not want_c and c_err:
            notes.append("C: " + c_err)
        if notes:
            msg += " (" + "; ".join(notes) + ")"
        print(msg)
        failed += 1
    if not args:
        for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "eval", "*.json"))):
            with open(path, encoding="utf-8") as f:
                scenario = json.load(f)
            if "policy" not in scenario:
                continue  # names a policy_file: an example, checked above
            err = jsonschema.exceptions.best_match(validator.iter_errors(scenario["policy"]))
            if err is None:
                print("ok %s (its policy)" % display(path))
                passed += 1
            else:
                ptr = "".join("/" + str(p) for p in err.absolute_path)
                print("FAIL %s: its policy is schema-invalid: /policy%s: %s" % (display(path), ptr, err.message))
                failed += 1
    if not args:
        with tempfile.TemporaryDirectory() as tmp:
            for name, doc, want_schema, want_c in generated():
                path = os.path.join(tmp, "generated.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(doc, f)
                got_schema, _ = schema_check(validator, path)
                got_c = want_c if schema_only else c_check(cli, path)[0]
                if got_schema == want_schema and got_c is want_c:
                    print("ok generated: %s" % name)
                    passed += 1
                else:
                    print("FAIL generated: %s: schema said %s, C said %s, expected schema %s and C %s" % (
                        name, word(got_schema), word(got_c), word(want_schema), word(want_c)))
                    failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
