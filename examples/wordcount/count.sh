#!/bin/sh
# count.sh: an exec task with one input. Counts the words of $SHOAL_INPUT_0 (letters and
# inner apostrophes, case folded) and prints "COUNT WORD" lines.
set -eu
tr -cs "A-Za-z'" '\n' < "$SHOAL_INPUT_0" |
    tr '[:upper:]' '[:lower:]' |
    sed "s/^'*//; s/'*\$//" |
    grep -v '^$' |
    sort | uniq -c | awk '{ print $1, $2 }'
