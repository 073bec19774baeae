#!/usr/bin/env bash
# Lists runs of 6+ lines in our tree (tracked and untracked files) that match
# CPython's multiprocessing package or its test suite, to the letter or by
# shape.  Every row printed must be rewritten in our own design and words.
# Usage: bash .ci/provenance.sh [path-prefix ...]   (default: the whole tree)
set -u
top=$(git rev-parse --show-toplevel) || exit 0
cd "$top"
ref=$(python3 -c 'import multiprocessing, os; print(os.path.dirname(multiprocessing.__file__))')
t=$(python3 -c 'import test, os; print(os.path.dirname(test.__file__))')
tmp=$(mktemp -d)
mkdir -p "$tmp/project" "$tmp/cpython"
git ls-files -co --exclude-standard -- '*.py' '*.c' '*.h' | while read -r f; do
  if [ $# -gt 0 ]; then
    keep=0; for p in "$@"; do case "$f" in "$p"*) keep=1;; esac; done
    [ $keep = 1 ] || continue
  fi
  mkdir -p "$tmp/project/$(dirname "$f")"; cp "$f" "$tmp/project/$f"
done
cp -r "$ref" "$tmp/cpython/"
cp "$t/_test_multiprocessing.py" "$tmp/cpython/"
duplicates --repo "$tmp" --min-lines 6 --most 200 --seconds 60 2>/dev/null \
  | grep -E '^D[0-9]+ ' | grep -E 'project/.* ~ cpython/|cpython/.* ~ project/' | grep -v boilerplate
rm -rf "$tmp"
exit 0
