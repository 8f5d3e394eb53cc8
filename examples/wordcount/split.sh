#!/bin/sh
# split.sh N FILE: an exec task with N outputs. Cuts FILE into N runs of whole lines of
# about equal length: run 0 goes to stdout (output 0), run i >= 1 to the file named by
# $SHOAL_OUTPUT_i, as shoal's exec convention has it.
set -eu
n=$1
file=$2
[ "$n" -ge 1 ] || { echo "split.sh: N must be at least 1" >&2; exit 2; }
total=$(wc -l < "$file")
per=$(( (total + n - 1) / n ))
[ "$per" -ge 1 ] || per=1
awk -v per="$per" -v n="$n" '
    {
        i = int((NR - 1) / per)
        if (i >= n) i = n - 1
        if (i == 0) { print; next }
        out = ENVIRON["SHOAL_OUTPUT_" i]
        if (out == "") { print "split.sh: SHOAL_OUTPUT_" i " is not set" > "/dev/stderr"; exit 2 }
        print > out
    }
    END {
        # Every output exists, even when there are fewer lines than chunks.
        for (i = 1; i < n; i++) { out = ENVIRON["SHOAL_OUTPUT_" i]; printf "" >> out; close(out) }
    }' "$file"
echo "split.sh: $total lines into $n chunks of up to $per" >&2
