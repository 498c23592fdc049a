#!/usr/bin/env bash
# check_install.sh BUILD_DIR SOURCE_DIR - install the built tree into a
# temporary prefix and build examples/backend_info.c against the *installed*
# library both ways: CMake's find_package(fmd) and pkg-config.
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
# the installed shared object carries the ABI major in its SONAME
readelf -d "$libdir/libfmd.so" | grep -q "soname: \[libfmd.so.0\]"
echo "install ok: find_package(fmd) and pkg-config both build and run against $tmp/prefix"
