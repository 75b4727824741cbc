#!/usr/bin/env bash
# Fails when the exported package or the notebooks are not what nbdev_export and nbdev_clean produce.
set -euo pipefail
snap=$(mktemp -d)
trap 'rm -rf "$snap"' EXIT
cp -rL bailando "$snap/bailando"; cp -rL nbs "$snap/nbs"
nbdev_export
if ! diff -r -x __pycache__ "$snap/bailando" bailando >/dev/null; then
  diff -r -x __pycache__ "$snap/bailando" bailando | head -40 || true
  echo "ERROR: bailando/ was out of sync with the notebooks. nbdev_export has now rewritten it: review and commit it (run 'nbdev_export' after every notebook edit; never edit bailando/*.py by hand)." >&2
  exit 1
fi
nbdev_clean
if ! diff -r -x .ipynb_checkpoints "$snap/nbs" nbs >/dev/null; then
  diff -r -x .ipynb_checkpoints "$snap/nbs" nbs | head -40 || true
  echo "ERROR: notebooks were not clean. nbdev_clean has now cleaned them: review and commit (run 'nbdev_clean' before committing)." >&2
  exit 1
fi
echo "sync: bailando/ matches the notebooks and the notebooks are clean"
