#!/usr/bin/env bash
# check_install.sh BUILD_DIR SOURCE_DIR - install the built tree into a
# temporary prefix and build examples/backend_info.c against the *installed*
# library: CMake's find_package(fmd), pkg-config, the installed fmd and a
# pkg-config program without LD_LIBRARY_PATH, and a static embedded_sample.
set -eu
build="$1"; src="$2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
# 1. CMake package
mkdir -p "$tmp/proj"
cat > "$tmp/proj/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(fmd REQUIRED)
add_executable(backend_info $src/examples/backend_info.c)
target_link_libraries(backend_info PRIVATE fmd::fmd)
CM
cmake -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cfg.log"
cmake --build "$tmp/proj/build" > "$tmp/build.log"
LD_LIBRARY_PATH="$libdir" "$tmp/proj/build/backend_info" | tee "$tmp/out1"
grep -q "libfmd" "$tmp/out1"
# 2. pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$tmp/bi2" "$src/examples/backend_info.c" $(pkg-config --cflags --libs fmd)
LD_LIBRARY_PATH="$libdir" "$tmp/bi2" | grep -q "libfmd"
# 3. installed programs find the library through their RPATH ($ORIGIN/../lib),
# and a pkg-config program through -Wl,-rpath (no LD_LIBRARY_PATH either way)
unset LD_LIBRARY_PATH
"$tmp/prefix/bin/fmd" --version | grep -q "^fmd "
readelf -d "$tmp/prefix/bin/fmd" | grep -q 'R.*PATH.*\$ORIGIN/\.\./lib'
cc -o "$tmp/bi3" "$src/examples/backend_info.c" $(pkg-config --cflags --libs fmd) \
   -Wl,-rpath,"$(pkg-config --variable=libdir fmd)"
"$tmp/bi3" | grep -q "libfmd"
# 4. static: libfmd.a in the program (fmd-static.pc; its dependencies shared,
# Debian ships no libdnnl.a), no libfmd.so needed, and it samples a student
pkg-config --static --libs fmd | grep -q -- "-ldnnl"
cc -o "$tmp/es" "$src/examples/embedded_sample.c" $(pkg-config --cflags --libs fmd-static)
if readelf -d "$tmp/es" | grep -q "NEEDED.*libfmd"; then
  echo "the static build of embedded_sample needs libfmd.so"; exit 1
fi
FMD_NUM_THREADS=1 "$tmp/prefix/bin/fmd" distill --teacher mixture:ring8 --out "$tmp/s.fmd" --steps 2 \
  --batch 16 -q
FMD_NUM_THREADS=1 "$tmp/es" "$tmp/s.fmd" "$tmp/es.png" 64 > /dev/null
test -s "$tmp/es.png"
# the installed shared object carries the ABI major in its SONAME
readelf -d "$libdir/libfmd.so" | grep -q "soname: \[libfmd.so.0\]"
echo "install ok: find_package(fmd), pkg-config (RPATH) and a static embedded_sample build and run against $tmp/prefix"
