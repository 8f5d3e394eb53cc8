#  libshoal.cmake: libshoal as users get it (included from the top CMakeLists.txt after
#  the `shoal` target): exported symbols, the static library, pkg-config and CMake package
#  files, and their install rules.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

#  local:// looks for the `shoal` binary in the install's bindir (after $SHOAL_BIN and the
#  running program's directory).
set_property(SOURCE client/local.c APPEND PROPERTY COMPILE_DEFINITIONS
             SHOAL_INSTALL_BINDIR="${CMAKE_INSTALL_FULL_BINDIR}")

#  The public API, read from the header: a version script for libshoal.so and a list for
#  libshoal.a. Internals (shoal__*, shoal_wire_*, shoal_proto_*, shoal_store_*) stay hidden.
set(SHOAL_SYMBOLS_MAP ${CMAKE_BINARY_DIR}/libshoal.map)
set(SHOAL_SYMBOLS_LIST ${CMAKE_BINARY_DIR}/libshoal.syms)
add_custom_command(
    OUTPUT ${SHOAL_SYMBOLS_MAP} ${SHOAL_SYMBOLS_LIST}
    COMMAND ${CMAKE_COMMAND} -DHEADER=${CMAKE_SOURCE_DIR}/include/shoal.h
            -DMAP=${SHOAL_SYMBOLS_MAP} -DLIST=${SHOAL_SYMBOLS_LIST}
            -P ${CMAKE_SOURCE_DIR}/cmake/shoal_symbols.cmake
    DEPENDS ${CMAKE_SOURCE_DIR}/include/shoal.h ${CMAKE_SOURCE_DIR}/cmake/shoal_symbols.cmake
    COMMENT "Listing the public API of libshoal")
add_custom_target(shoal_symbols DEPENDS ${SHOAL_SYMBOLS_MAP} ${SHOAL_SYMBOLS_LIST})
add_dependencies(shoal shoal_symbols)
target_link_options(shoal PRIVATE "LINKER:--version-script=${SHOAL_SYMBOLS_MAP}")
set_property(TARGET shoal APPEND PROPERTY LINK_DEPENDS ${SHOAL_SYMBOLS_MAP})

#  libshoal.a: the client and the internal code it uses, linked into one relocatable
#  object (ld -r pulls from the internal archives only the members it needs) whose
#  symbols beyond the public API are made local. A program linking it statically sees
#  what a program linking libshoal.so sees, and needs only libzmq (shoal-static.pc).
set(SHOAL_STATIC ${CMAKE_BINARY_DIR}/libshoal.a)
set(SHOAL_STATIC_OBJ ${CMAKE_BINARY_DIR}/CMakeFiles/libshoal-prelinked.o)
add_custom_command(
    OUTPUT ${SHOAL_STATIC}
    COMMAND ${CMAKE_COMMAND} -E rm -f ${SHOAL_STATIC} ${SHOAL_STATIC_OBJ}
    COMMAND ${CMAKE_LINKER} -r -o ${SHOAL_STATIC_OBJ}
            --whole-archive $<TARGET_FILE:shoal_client> --no-whole-archive
            --start-group $<TARGET_FILE:shoal_proto> $<TARGET_FILE:shoal_store>
            $<TARGET_FILE:shoal_common> --end-group
    COMMAND ${CMAKE_OBJCOPY} --keep-global-symbols=${SHOAL_SYMBOLS_LIST} ${SHOAL_STATIC_OBJ}
    COMMAND ${CMAKE_AR} qc ${SHOAL_STATIC} ${SHOAL_STATIC_OBJ}
    COMMAND ${CMAKE_RANLIB} ${SHOAL_STATIC}
    DEPENDS shoal_client shoal_proto shoal_store shoal_common ${SHOAL_SYMBOLS_LIST}
    COMMENT "Linking libshoal.a")
add_custom_target(shoal_static ALL DEPENDS ${SHOAL_STATIC})

#  pkg-config: shoal.pc (libshoal.so; --static adds the dependencies of libshoal.a) and
#  shoal-static.pc (libshoal.a by path, so the shared library cannot win). Both relocatable
#  through ${pcfiledir}, so `cmake --install --prefix P` anywhere gives working files.
#  What libshoal.a needs: libzmq, and LMDB for reading the stores of workers on the same
#  host (msgpack-c's packer is header-only). tests/client_install.sh links statically, so
#  it fails when these lists fall behind.
set(SHOAL_PC_REQUIRES "libzmq lmdb")
set(SHOAL_STATIC_LINK_LIBS "zmq;lmdb;pthread;rt")
set(_pcdir ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig)
set(_cmakedir ${CMAKE_INSTALL_FULL_LIBDIR}/cmake/shoal)
file(RELATIVE_PATH SHOAL_PC_PREFIX ${_pcdir} ${CMAKE_INSTALL_PREFIX})
file(RELATIVE_PATH SHOAL_CMAKE_PREFIX ${_cmakedir} ${CMAKE_INSTALL_PREFIX})
file(RELATIVE_PATH SHOAL_PC_LIBDIR ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_LIBDIR})
file(RELATIVE_PATH SHOAL_PC_INCLUDEDIR ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_INCLUDEDIR})
file(RELATIVE_PATH SHOAL_PC_BINDIR ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_BINDIR})
configure_file(cmake/shoal.pc.in ${CMAKE_BINARY_DIR}/shoal.pc @ONLY)
configure_file(cmake/shoal-static.pc.in ${CMAKE_BINARY_DIR}/shoal-static.pc @ONLY)
configure_file(cmake/shoalConfig.cmake.in ${CMAKE_BINARY_DIR}/shoalConfig.cmake @ONLY)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/shoalConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)

install(FILES ${SHOAL_STATIC} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_BINARY_DIR}/shoal.pc ${CMAKE_BINARY_DIR}/shoal-static.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${CMAKE_BINARY_DIR}/shoalConfig.cmake ${CMAKE_BINARY_DIR}/shoalConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/shoal)
