# Where `cmake --install` puts wand's configuration and what the systemd unit reads.
# Included at configure time (systemd/, configs/) and again, in script mode, by the
# install scripts those folders generate, so the paths follow the prefix given at install
# time too (`cmake --install build --prefix /usr`), not only the configured one.
#
# Note [Install layout]: wand.service reads `--config <config dir>/wand.json`, and the
# configuration is installed into that same absolute directory:
#   prefix /usr or /usr/local (the system prefixes)  ->  /etc/wand
#   prefix /opt/<name>                               ->  /etc/opt/<name>/wand (GNUInstallDirs' rule)
#   any other prefix                                 ->  <prefix>/etc/wand
#   -DWAND_CONFIG_DIR=/abs/dir                       ->  that directory, whatever the prefix
# /usr/local gives /etc/wand too (not GNUInstallDirs' /usr/local/etc): a unit under systemd
# is configured in /etc whoever built it, and the docs and configs/wand.json say so.
# A wand.json already there is never overwritten (an operator's edits survive a re-install):
# the default is installed as wand.json only when none exists, and always as
# wand.json.example beside it. The binaries go to <prefix>/bin, the docs to
# <prefix>/share/doc/wand; the unit's ExecStart= and Documentation= name those.
# tests/daemon/install_layout_test.cmake installs into a DESTDIR and checks all of it.
include_guard(GLOBAL)

# wand_layout(PREFIX <prefix> [BINDIR bin] [SYSCONFDIR etc] [DOCDIR share/doc/wand] [CONFIG_DIR dir])
# Sets WAND_BIN_DIR, WAND_CONFIG_DIR_RESOLVED, WAND_CONFIG_FILE, WAND_DOC_DIR in the caller.
function(wand_layout)
  cmake_parse_arguments(L "" "PREFIX;BINDIR;SYSCONFDIR;DOCDIR;CONFIG_DIR" "" ${ARGN})
  string(REGEX REPLACE "/+$" "" p "${L_PREFIX}")
  foreach(v BINDIR SYSCONFDIR DOCDIR)
    if(NOT L_${v})
      set(L_${v} "")
    endif()
  endforeach()
  if(L_BINDIR STREQUAL "")
    set(L_BINDIR bin)
  endif()
  if(L_SYSCONFDIR STREQUAL "")
    set(L_SYSCONFDIR etc)
  endif()
  if(L_DOCDIR STREQUAL "")
    set(L_DOCDIR share/doc/wand)
  endif()
  macro(_wand_full out rel)
    if(IS_ABSOLUTE "${rel}")
      set(${out} "${rel}")
    else()
      set(${out} "${p}/${rel}")
    endif()
  endmacro()
  _wand_full(bin "${L_BINDIR}")
  _wand_full(doc "${L_DOCDIR}")
  if(L_CONFIG_DIR)
    set(conf "${L_CONFIG_DIR}")
  elseif(p STREQUAL "/usr" OR p STREQUAL "/usr/local")
    set(conf "/etc/wand")
  elseif(IS_ABSOLUTE "${L_SYSCONFDIR}")
    set(conf "${L_SYSCONFDIR}/wand")
  elseif(p MATCHES "^/opt/" AND L_SYSCONFDIR STREQUAL "etc")
    set(conf "/etc${p}/wand")
  else()
    set(conf "${p}/${L_SYSCONFDIR}/wand")
  endif()
  set(WAND_BIN_DIR "${bin}" PARENT_SCOPE)
  set(WAND_DOC_DIR "${doc}" PARENT_SCOPE)
  set(WAND_CONFIG_DIR_RESOLVED "${conf}" PARENT_SCOPE)
  set(WAND_CONFIG_FILE "${conf}/wand.json" PARENT_SCOPE)
endfunction()

# Install-time step of configs/: wand.json.example always, wand.json only when absent.
function(wand_install_config src)
  wand_layout(PREFIX "${CMAKE_INSTALL_PREFIX}" SYSCONFDIR "${WAND_LAYOUT_SYSCONFDIR}"
              CONFIG_DIR "${WAND_LAYOUT_CONFIG_DIR}")
  file(INSTALL DESTINATION "${WAND_CONFIG_DIR_RESOLVED}" TYPE FILE RENAME wand.json.example FILES "${src}")
  if(EXISTS "$ENV{DESTDIR}${WAND_CONFIG_FILE}")
    message(STATUS "Kept: $ENV{DESTDIR}${WAND_CONFIG_FILE} (an existing configuration is never replaced; "
                   "the new default is wand.json.example beside it)")
  else()
    file(INSTALL DESTINATION "${WAND_CONFIG_DIR_RESOLVED}" TYPE FILE FILES "${src}")
  endif()
endfunction()

# Writes wand.service from its template with the layout of `prefix`.
function(wand_write_unit template out prefix)
  wand_layout(PREFIX "${prefix}" BINDIR "${WAND_LAYOUT_BINDIR}" SYSCONFDIR "${WAND_LAYOUT_SYSCONFDIR}"
              DOCDIR "${WAND_LAYOUT_DOCDIR}" CONFIG_DIR "${WAND_LAYOUT_CONFIG_DIR}")
  configure_file("${template}" "${out}" @ONLY)
endfunction()

# Install-time step of systemd/: the unit for the install-time prefix.
function(wand_install_unit template work_dir unit_dir)
  wand_write_unit("${template}" "${work_dir}/wand.service" "${CMAKE_INSTALL_PREFIX}")
  if(NOT IS_ABSOLUTE "${unit_dir}")
    set(unit_dir "${CMAKE_INSTALL_PREFIX}/${unit_dir}")
  endif()
  file(INSTALL DESTINATION "${unit_dir}" TYPE FILE FILES "${work_dir}/wand.service")
endfunction()
