#!/bin/sh
#  client_symbols.sh LIBSHOAL_SO LIBSHOAL_A SHOAL_H: libshoal exports exactly the functions
#  that include/shoal.h declares, no internals (shoal__*, shoal_wire_*, shoal_proto_*,
#  shoal_store_*, ...), and every declared function is defined.
#
#  The build makes the export list from the header with a line-based reader
#  (cmake/shoal_symbols.cmake); this test reads the header its own way, through the C
#  preprocessor and a brace-depth scan, so a mistake in either shows up as a difference.
set -eu
so=$1
archive=$2
header=$3
tmp=$(mktemp -d /tmp/shoal-test-symbols-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

#  Declarations at file scope: statements at brace depth 0 that name shoal_X( before any
#  other parenthesis, and are not static inline, typedefs or extern variables.
${CC:-cc} -E -P -x c "$header" | tr '\n' ' ' | awk '
{
    for (i = 1; i <= length($0); i++) {
        c = substr($0, i, 1)
        if (c == "{") {
            if (depth == 0) { print stmt; stmt = "" }
            depth++
        } else if (c == "}") {
            depth--
            if (depth == 0) stmt = ""
        } else if (depth == 0) {
            if (c == ";") { print stmt; stmt = "" } else stmt = stmt c
        }
    }
}' | sed -e 's/^[[:space:]]*//' | grep -Ev '^(static|typedef|extern)[[:space:]]' |
    sed -n 's/^[^()]*[^A-Za-z0-9_(]\(shoal_[A-Za-z0-9_]*\)[[:space:]]*(.*/\1/p' |
    sort -u > "$tmp/declared"

nm -D --defined-only "$so" | awk 'NF == 3 && $2 != "A" { sub(/@.*/, "", $3); print $3 }' |
    sort -u > "$tmp/so"
nm -g --defined-only "$archive" | awk 'NF == 3 { print $3 }' | sort -u > "$tmp/a"

status=0
[ -s "$tmp/declared" ] || { echo "client_symbols: no declarations found in $header"; exit 1; }
for lib in so a; do
    name=$so
    [ "$lib" = a ] && name=$archive
    extra=$(comm -13 "$tmp/declared" "$tmp/$lib")
    missing=$(comm -23 "$tmp/declared" "$tmp/$lib")
    if [ -n "$extra" ]; then
        echo "client_symbols: $name exports what shoal.h does not declare:" "$(echo "$extra" | tr "\n" " ")"
        status=1
    fi
    if [ -n "$missing" ]; then
        echo "client_symbols: $name lacks functions shoal.h declares:" "$(echo "$missing" | tr "\n" " ")"
        status=1
    fi
done
[ $status -eq 0 ] && echo "client_symbols: libshoal.so and libshoal.a export the $(wc -l < "$tmp/declared") functions of shoal.h, nothing else"
exit $status
