#!/bin/sh
# merge.sh K: an exec task with any number of inputs ("COUNT WORD" lines from count.sh).
# Sums the counts of every input ($SHOAL_INPUT_0, $SHOAL_INPUT_1, ...) and prints the K
# most frequent words, then the totals.
set -eu
k=${1:-10}
i=0
files=""
while :; do
    eval "f=\${SHOAL_INPUT_$i:-}"
    [ -n "$f" ] || break
    files="$files $f"
    i=$((i + 1))
done
[ "$i" -gt 0 ] || { echo "merge.sh: no inputs" >&2; exit 2; }
# shellcheck disable=SC2086  # the input paths are shoal's and hold no spaces
awk '{ n[$2] += $1; total += $1 }
     END { for (w in n) print n[w], w; print total + 0 > "totals" }' $files |
    sort -k1,1nr -k2,2 > merged
head -n "$k" merged | awk '{ printf "%7d  %s\n", $1, $2 }'
printf 'total: %d words, %d distinct, from %d chunks\n' "$(cat totals)" "$(wc -l < merged)" "$i"
