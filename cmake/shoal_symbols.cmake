#  shoal_symbols.cmake: the public API of libshoal, read from include/shoal.h.
#
#  cmake -DHEADER=include/shoal.h -DMAP=libshoal.map -DLIST=libshoal.syms -P shoal_symbols.cmake
#
#  Every function declared at the start of a line of the header (not static inline, not
#  a typedef) is public: MAP becomes a linker version script that exports those and hides
#  everything else of libshoal.so, LIST the same names one per line (objcopy
#  --keep-global-symbols for libshoal.a). Generated rather than kept by hand, so a call
#  added to the header is exported without a second edit; tests/client_symbols.sh checks
#  the libraries against the header with a parser of its own.
file(STRINGS "${HEADER}" lines REGEX "^[A-Za-z_][A-Za-z0-9_ \t*]*[ \t*]shoal_[A-Za-z0-9_]+[ \t]*\\(")
set(names "")
foreach(line IN LISTS lines)
    if(line MATCHES "^(static|typedef|extern)[ \t]")
        continue()
    endif()
    string(REGEX MATCH "shoal_[A-Za-z0-9_]+[ \t]*\\(" name "${line}")
    string(REGEX REPLACE "[ \t]*\\($" "" name "${name}")
    list(APPEND names "${name}")
endforeach()
list(REMOVE_DUPLICATES names)
list(SORT names)
list(LENGTH names count)
if(count EQUAL 0)
    message(FATAL_ERROR "shoal_symbols: no functions found in ${HEADER}")
endif()
set(map "/*  Generated from include/shoal.h by cmake/shoal_symbols.cmake: libshoal.so exports\n")
string(APPEND map "    the public API only. */\n{\n  global:\n")
set(list "")
foreach(name IN LISTS names)
    string(APPEND map "    ${name};\n")
    string(APPEND list "${name}\n")
endforeach()
string(APPEND map "  local:\n    *;\n};\n")
file(WRITE "${MAP}" "${map}")
file(WRITE "${LIST}" "${list}")
