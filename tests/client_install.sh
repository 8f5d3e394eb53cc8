#!/bin/sh
#  client_install.sh BUILD_DIR SOURCE_DIR: a program built outside the tree against an
#  installed libshoal, as a user builds one.
#
#  Installs the build into a temporary prefix (`cmake --install --prefix`), checks the
#  files, then builds examples/client/hello.c (a copy, away from the source tree) with
#  pkg-config against the shared library (shoal.pc) and the static one (shoal-static.pc),
#  and with CMake's find_package(shoal). Each program starts a local://1 cluster from the
#  installed `shoal`, found through $SHOAL_BIN, PATH or its own directory, and must print
#  what `echo` wrote. $CC and $SHOAL_TEST_CFLAGS (sanitizers) come from ctest.
set -eu
build=$1
src=$2
cc=${CC:-cc}
cflags=${SHOAL_TEST_CFLAGS:-}
want="hello from shoal"
tmp=$(mktemp -d /tmp/shoal-test-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { echo "client_install: $*"; }
fail() {
    echo "client_install: FAILED: $*" >&2
    exit 1
}
#  run NAME CMD...: runs a hello program, checks its output.
run() {
    name=$1
    shift
    step "run $name"
    if ! out=$("$@" 2> "$tmp/err"); then
        cat "$tmp/err" >&2
        fail "$name exited with status $?"
    fi
    [ "$out" = "$want" ] || { cat "$tmp/err" >&2; fail "$name printed '$out', not '$want'"; }
}

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
for f in bin/shoal include/shoal.h lib/libshoal.a lib/libshoal.so lib/libshoal.so.0 \
    lib/pkgconfig/shoal.pc lib/pkgconfig/shoal-static.pc lib/cmake/shoal/shoalConfig.cmake \
    lib/cmake/shoal/shoalConfigVersion.cmake; do
    [ -e "$prefix/$f" ] || fail "$f was not installed"
done
if ! [ -L "$prefix/lib/libshoal.so" ] || ! [ -L "$prefix/lib/libshoal.so.0" ]; then
    fail "libshoal.so and libshoal.so.0 are not links to the versioned library"
fi
readelf -d "$prefix/lib/libshoal.so" | grep -q 'SONAME.*libshoal\.so\.0' || fail "soname"

cp "$src/examples/client/hello.c" "$tmp/hello.c"
cd "$tmp"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists shoal shoal-static || fail "pkg-config does not find shoal"
pkg-config --static --libs shoal | grep -q -- '-lzmq' || fail "shoal.pc --static lacks libzmq"

step "shared: $cc hello.c \$(pkg-config --cflags --libs shoal)"
# shellcheck disable=SC2046,SC2086
$cc $cflags -Wall -Wextra -Werror hello.c $(pkg-config --cflags --libs shoal) \
    -Wl,-rpath,"$prefix/lib" -o hello-shared
readelf -d hello-shared | grep -q 'NEEDED.*libshoal\.so\.0' || fail "hello-shared does not use libshoal.so.0"

step "static: $cc hello.c \$(pkg-config --cflags --libs shoal-static)"
# shellcheck disable=SC2046,SC2086
$cc $cflags -Wall -Wextra -Werror hello.c $(pkg-config --cflags --libs shoal-static) \
    -o hello-static
if readelf -d hello-static | grep -q 'NEEDED.*libshoal'; then
    fail "hello-static needs libshoal.so"
fi

#  Where local:// finds `shoal`: $SHOAL_BIN; PATH; the program's own directory.
run "hello-shared with SHOAL_BIN" env SHOAL_BIN="$prefix/bin/shoal" ./hello-shared
if [ -e /usr/local/bin/shoal ]; then
    step "note: /usr/local/bin/shoal exists and comes before PATH"
fi
run "hello-static with PATH" env -u SHOAL_BIN PATH="$prefix/bin:$PATH" ./hello-static
cp hello-static "$prefix/bin/hello"
run "hello next to shoal" env -u SHOAL_BIN PATH=/usr/bin:/bin "$prefix/bin/hello"

step "cmake: find_package(shoal)"
mkdir cm
cat > cm/CMakeLists.txt << 'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(hello C)
find_package(shoal 0.1 REQUIRED)
add_executable(hello ../hello.c)
target_link_libraries(hello PRIVATE shoal::shoal)
add_executable(hello_static ../hello.c)
target_link_libraries(hello_static PRIVATE shoal::shoal_static)
file(WRITE ${CMAKE_BINARY_DIR}/shoal-bin.txt "${SHOAL_EXECUTABLE}")
CMAKE
if ! cmake -S cm -B cm/build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" > "$tmp/cmake.log" 2>&1 ||
    ! cmake --build cm/build >> "$tmp/cmake.log" 2>&1; then
    cat "$tmp/cmake.log" >&2
    fail "cmake build"
fi
[ "$(cat cm/build/shoal-bin.txt)" = "$prefix/bin/shoal" ] || fail "SHOAL_EXECUTABLE is $(cat cm/build/shoal-bin.txt)"
run "cmake hello" env SHOAL_BIN="$prefix/bin/shoal" cm/build/hello
run "cmake hello_static" env SHOAL_BIN="$prefix/bin/shoal" cm/build/hello_static

#  Nothing of the installed copy may still run.
for p in /proc/[0-9]*; do
    if grep -q "$prefix" "$p/cmdline" 2> /dev/null; then
        fail "process ${p#/proc/} still runs: $(tr '\0' ' ' < "$p/cmdline")"
    fi
done
step "ok"
