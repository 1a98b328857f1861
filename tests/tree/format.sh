#!/usr/bin/env bash
# The C sources are as clang-format (.clang-format at the top) leaves them.
# To format: clang-format -i FILE... (Debian 12's clang-format 14; another
# version may move a few lines).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if ! command -v clang-format >/dev/null; then
  echo "not ok - clang-format is not installed (tests/install-deps.sh)"; echo "0 passed, 1 failed"; exit 1
fi
mapfile -t files < <(find agent bench cli controller include lib tests -name '*.[ch]' | sort)
if out=$(clang-format --dry-run -Werror "${files[@]}" 2>&1); then
  echo "ok - ${#files[@]} C files formatted ($(clang-format --version | head -1))"; echo "1 passed, 0 failed"
else
  echo "not ok - not formatted (clang-format -i FILE):"
  grep -oE '^[^:]+\.[ch]' <<<"$out" | sort -u | sed 's/^/    /'
  echo "0 passed, 1 failed"; exit 1
fi
