#!/usr/bin/env bash
# check_symbols.sh LIB - the shared library exports only fmd_* symbols and its
# SONAME is libfmd.so.<ABI major>.
set -eu
lib="$1"
want_soname="${2:-libfmd.so.0}"
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRWVi]$/ {print $3}' \
      | sed 's/@.*//' | grep -v '^fmd_' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' || true)
if [ -n "$bad" ]; then
  echo "exported symbols outside fmd_*:"; echo "$bad"; exit 1
fi
n=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep -c '^fmd_' || true)
[ "$n" -gt 10 ] || { echo "only $n fmd_* symbols exported"; exit 1; }
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ "$soname" = "$want_soname" ] || { echo "SONAME is '$soname', expected '$want_soname'"; exit 1; }
# every exported function is declared in the public header
hdr="$(dirname "$0")/../include/fmd.h"
missing=""
for s in $(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//'); do
  grep -q "\b$s(" "$hdr" || missing="$missing $s"
done
[ -z "$missing" ] || { echo "exported but not declared in fmd.h:$missing"; exit 1; }
echo "symbols ok: $n fmd_* symbols, SONAME $soname"
