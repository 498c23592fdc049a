#!/usr/bin/env bash
# errors.sh FMD - the `fmd` tool's failure paths without Python (so that the
# sanitizer build runs them too): every bad flag, missing or corrupt file
# gives exactly one line on stderr, nothing on stdout, and exit 1 or 2 (never
# a signal, an abort or a sanitizer report).  --help works on every command.
set -u
FMD=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export FMD_BACKEND=cpu FMD_NUM_THREADS=1
fail=0

expect_error() {   # expected-code args...
  local want=$1; shift
  "$FMD" "$@" > "$dir/out" 2> "$dir/err"
  local rc=$?
  local lines
  lines=$(wc -l < "$dir/err")
  if [ "$rc" != "$want" ] || [ "$lines" != 1 ] || [ -s "$dir/out" ]; then
    echo "FAIL: fmd $* -> exit $rc (want $want), $lines stderr lines:"; cat "$dir/err" "$dir/out"
    fail=1
  fi
}

for c in info train-teacher distill sample eval demo options; do
  if ! "$FMD" "$c" --help | grep -q "^usage: fmd $c"; then echo "FAIL: fmd $c --help"; fail=1; fi
done
expect_error 2
expect_error 2 bogus
expect_error 2 distill --bogus
expect_error 2 distill --steps
expect_error 2 sample --n abc
expect_error 2 sample --teacher mixture:ring8 --n 4 --out "$dir/x.txt"
expect_error 2 sample --teacher mixture:ring8 --n 4 --best-of 4 --out "$dir/x.npy"
expect_error 2 eval --teacher mixture:ring8 --euler 1,x
# values the library refuses as invalid are usage errors (2), like bad flags
expect_error 2 distill --teacher mixture:nope --out "$dir/x.fmd"
expect_error 2 distill --teacher mixture:ring8 --out "$dir/x.fmd" --set no_such_key=1
expect_error 2 distill --teacher mixture:ring8 --out "$dir/x.fmd" --set data_pool=100
expect_error 2 distill --teacher mixture:ring8 --out "$dir/x.fmd" --lr -1
expect_error 2 distill --teacher mixture:ring8 --out "$dir/x.fmd" --batch 0
expect_error 2 sample --teacher mixture:ring8 --n 2 --delta 2 --out "$dir/x.npy"
expect_error 2 sample --teacher mixture:ring8 --n 2 --steps 4 --out "$dir/x.npy"
expect_error 2 options nope
expect_error 1 distill --teacher mixture:ring8 --out "$dir/none.fmd" --resume
expect_error 1 sample --student "$dir/missing.fmd" --n 2 --out "$dir/x.npy"
expect_error 1 info "$dir/missing.fmd"
head -c 300 /dev/urandom > "$dir/junk.fmd"
expect_error 1 info "$dir/junk.fmd"
expect_error 1 sample --student "$dir/junk.fmd" --n 2 --out "$dir/x.npy"
expect_error 1 eval --teacher "$dir/junk.fmd"
expect_error 1 train-teacher --data "npy:$dir/junk.fmd" --out "$dir/t.fmd"
# .npy labels the library refuses, named by index and value (the label scan
# of train-teacher once overflowed on INT32_MAX: UBSan in the sanitizer run)
npy() {   # file descr shape bytes-as-printf-escapes
  local h="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  local total=$(( (10 + ${#h} + 1 + 63) / 64 * 64 ))
  local pad=$(( total - 10 - ${#h} - 1 ))
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (total - 10) % 256 )))\\x$(printf %02x $(( (total - 10) / 256 )))";
    printf '%s' "$h"; printf "%${pad}s\n" ""; printf "$4"; } > "$1"
}
npy "$dir/x2.npy" '<f4' '(2, 2)' '\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
for lab in '\x00\x00\x00\x00\xff\xff\xff\x7f:labels\[1\] = 2147483647' \
           '\x00\x00\x00\x00\xfd\xff\xff\xff:labels\[1\] = -3 is negative' \
           '\x05\x00\x00\x01\x00\x00\x00\x00:labels\[0\] = 16777221'; do
  npy "$dir/l2.npy" '<i4' '(2,)' "${lab%%:*}"
  expect_error 2 train-teacher --data "npy:$dir/x2.npy,$dir/l2.npy" --out "$dir/t2.fmd" --steps 1
  grep -q "${lab#*:}" "$dir/err" || { echo "FAIL: label message: $(cat "$dir/err")"; fail=1; }
done
# a real checkpoint, truncated and bit-flipped
"$FMD" train-teacher --data mixture:ring8 --n 500 --out "$dir/t.fmd" --steps 5 \
  --set width=16 --set depth=1 --set temb_dim=8 --quiet || { echo "FAIL: train-teacher"; fail=1; }
size=$(stat -c %s "$dir/t.fmd")
for cut in 0 7 16 100 $((size / 2)) $((size - 33)) $((size - 1)); do
  head -c "$cut" "$dir/t.fmd" > "$dir/cut.fmd"
  expect_error 1 info "$dir/cut.fmd"
  expect_error 1 sample --teacher "$dir/cut.fmd" --n 2 --out "$dir/x.npy"
done
# an existing --out is refused unless --force (or, for distill, --resume)
cp "$dir/t.fmd" "$dir/t0.fmd"
expect_error 1 train-teacher --data mixture:ring8 --n 50 --out "$dir/t.fmd" --steps 1 --set width=8
grep -q -- "--force" "$dir/err" || { echo "FAIL: overwrite message: $(cat "$dir/err")"; fail=1; }
cmp -s "$dir/t.fmd" "$dir/t0.fmd" || { echo "FAIL: train-teacher replaced an existing --out"; fail=1; }
"$FMD" train-teacher --data mixture:ring8 --n 50 --out "$dir/t.fmd" --steps 1 --set width=8 \
  --set depth=1 --set temb_dim=8 --quiet --force || { echo "FAIL: train-teacher --force"; fail=1; }
cmp -s "$dir/t.fmd" "$dir/t0.fmd" && { echo "FAIL: --force did not replace --out"; fail=1; }
small="--student-set width=8 --student-set depth=1 --student-set temb_dim=8 --batch 8 --quiet"
"$FMD" distill --teacher mixture:ring8 --out "$dir/d.fmd" --steps 2 $small \
  || { echo "FAIL: distill"; fail=1; }
cp "$dir/d.fmd" "$dir/d0.fmd"
expect_error 1 distill --teacher mixture:ring8 --out "$dir/d.fmd" --steps 2 $small
grep -q -- "--resume" "$dir/err" || { echo "FAIL: overwrite message: $(cat "$dir/err")"; fail=1; }
cmp -s "$dir/d.fmd" "$dir/d0.fmd" || { echo "FAIL: distill replaced an existing --out"; fail=1; }
"$FMD" distill --teacher mixture:ring8 --out "$dir/d.fmd" --steps 4 --resume $small \
  || { echo "FAIL: distill --resume"; fail=1; }
"$FMD" distill --teacher mixture:ring8 --out "$dir/d.fmd" --steps 1 --force $small \
  || { echo "FAIL: distill --force"; fail=1; }
exit $fail
