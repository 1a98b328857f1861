#!/usr/bin/env bash
# `bulkhead keygen DIR [--force]` writes only where it means to (issue 10,
# item 15): a symbolic link planted at DIR/secret.key (or public.key) is
# refused, with or without --force, and the file it points at stays
# untouched; so is a directory others may write in, and (as root) a key
# file or directory another user owns. A good --force replaces both keys.
# Usage: keygen.sh [BULKHEAD_CLI]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$(realpath "${1:-$root/build/cli/bulkhead}")
pass=0 fail=0
tmp=$(mktemp -d /tmp/bulkhead-keygen.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
check() { # NAME COMMAND...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}
keygen() { "$cli" keygen "$@" >"$tmp/out" 2>"$tmp/err"; }
said() { grep -qF -- "$1" "$tmp/err" || { sed 's/^/    /' "$tmp/err"; false; }; }

echo "precious" >"$tmp/victim"
chmod 644 "$tmp/victim"
victim_untouched() { [ "$(cat "$tmp/victim")" = precious ] && [ "$(stat -c %a "$tmp/victim")" = 644 ]; }

check "keygen makes a pair" keygen "$tmp/k"
check "the secret key is 0600" test "$(stat -c %a "$tmp/k/secret.key")" = 600
check "the directory is 0700" test "$(stat -c %a "$tmp/k")" = 700
old=$(cat "$tmp/k/public.key")

for f in secret.key public.key; do
  rm -f "$tmp/k/$f"
  ln -s "$tmp/victim" "$tmp/k/$f"
  keygen "$tmp/k" --force
  check "--force with a symlink at DIR/$f exits 1" test $? -eq 1
  check "and says it is a symbolic link" said "$tmp/k/$f: a symbolic link: refused"
  check "the file the $f link points at is untouched" victim_untouched
  check "the link is still a link (nothing replaced)" test -L "$tmp/k/$f"
  keygen "$tmp/k"
  check "without --force a $f link counts as an existing key" said "$tmp/k/$f: exists; --force replaces it"
  check "and the file it points at is still untouched" victim_untouched
  rm -f "$tmp/k/$f"
done
check "no temporary file is left behind" test -z "$(find "$tmp/k" -name '.*.key.*')"

# A dangling link too (it would be created through).
ln -s "$tmp/created-through-link" "$tmp/k/secret.key"
keygen "$tmp/k" --force
check "--force with a dangling link at DIR/secret.key is refused" said "a symbolic link: refused"
check "nothing was created at the link's target" test ! -e "$tmp/created-through-link"
rm -f "$tmp/k/secret.key"

check "--force on a plain pair replaces both" keygen "$tmp/k" --force
check "with a new public key" test "$(cat "$tmp/k/public.key")" != "$old"
check "the new secret key is 0600" test "$(stat -c %a "$tmp/k/secret.key")" = 600

chmod 777 "$tmp/k"
keygen "$tmp/k" --force
check "a key directory everyone may write in is refused" said "$tmp/k: writable by everyone (mode 0777)"
chmod 770 "$tmp/k"
keygen "$tmp/k" --force
check "one its group may write in too" said "writable by its group (mode 0770)"
chmod 700 "$tmp/k"

if [ "$(id -u)" = 0 ]; then
  chown nobody "$tmp/k/secret.key"
  keygen "$tmp/k" --force
  check "a secret.key another user owns is refused" said "$tmp/k/secret.key: owned by uid $(id -u nobody)"
  chown root "$tmp/k/secret.key"
  mkdir "$tmp/other" && chown nobody "$tmp/other"
  keygen "$tmp/other/keys"
  check "a key directory inside another user's directory is refused" said "$tmp/other: owned by uid $(id -u nobody)"
  check "and nothing is written there" test ! -e "$tmp/other/keys/secret.key"
else
  echo "# not root: ownership cases skipped"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
