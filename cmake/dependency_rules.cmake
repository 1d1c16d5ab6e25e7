# The dependency rule of the analysis half (docs/architecture.md): the libraries that read
# datasets never link a transport or a device target. meltrig_check_forbidden_links() walks a
# target's link graph (LINK_LIBRARIES and INTERFACE_LINK_LIBRARIES, transitively, through
# generator expressions such as $<LINK_ONLY:...>) at configure time and stops the configure, and
# so the build, if it reaches a forbidden target or a library whose name matches a forbidden
# pattern.

# Collects the link items of `target` (both what it links and what it passes on).
function(_meltrig_link_items target out)
  set(items)
  get_target_property(type ${target} TYPE)
  set(props INTERFACE_LINK_LIBRARIES)
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    list(APPEND props LINK_LIBRARIES)
  endif()
  foreach(prop IN LISTS props)
    get_target_property(v ${target} ${prop})
    if(v)
      list(APPEND items ${v})
    endif()
  endforeach()
  set(clean)
  foreach(item IN LISTS items)
    # $<LINK_ONLY:x>, $<BUILD_INTERFACE:x>, $<$<CONFIG:..>:x>: keep the innermost value.
    string(REGEX REPLACE "^\\$<[A-Z_]+:(.*)>$" "\\1" item "${item}")
    string(REGEX REPLACE "^\\$<\\$<[^>]*>:(.*)>$" "\\1" item "${item}")
    # A library linked from a subdirectory may carry CMake's ::@(directory-id) suffix.
    string(REGEX REPLACE "::@\\([^)]*\\)$" "" item "${item}")
    if(item AND NOT item MATCHES "^::@")
      list(APPEND clean "${item}")
    endif()
  endforeach()
  set(${out} ${clean} PARENT_SCOPE)
endfunction()

# Fails the configure if `target` reaches, directly or transitively, a target in FORBIDDEN_TARGETS
# or a link item matching one of FORBIDDEN_PATTERNS (regular expressions on library names/paths).
function(meltrig_check_forbidden_links target)
  cmake_parse_arguments(ARG "" "" "FORBIDDEN_TARGETS;FORBIDDEN_PATTERNS" ${ARGN})
  if(NOT TARGET ${target})
    message(FATAL_ERROR "dependency rule: ${target} is not a target")
  endif()
  set(queue ${target})
  set(seen)
  set(path_${target} "${target}")
  while(queue)
    list(POP_FRONT queue current)
    if(current IN_LIST seen)
      continue()
    endif()
    list(APPEND seen ${current})
    set(here "${path_${current}}")
    if(NOT current STREQUAL target)
      if(current IN_LIST ARG_FORBIDDEN_TARGETS)
        message(FATAL_ERROR "dependency rule broken: ${target} links ${current} (${here}); "
                            "see docs/architecture.md")
      endif()
      foreach(pattern IN LISTS ARG_FORBIDDEN_PATTERNS)
        if(current MATCHES "${pattern}")
          message(FATAL_ERROR "dependency rule broken: ${target} links ${current} (${here}), "
                              "which matches '${pattern}'; see docs/architecture.md")
        endif()
      endforeach()
    endif()
    if(TARGET ${current})
      _meltrig_link_items(${current} items)
      foreach(item IN LISTS items)
        if(NOT item IN_LIST seen)
          if(NOT DEFINED path_${item})
            set(path_${item} "${here} -> ${item}")
          endif()
          list(APPEND queue "${item}")
        endif()
      endforeach()
    endif()
  endwhile()
endfunction()

# The rule itself: no transport (libserialport, libusb) and no device target below the dataset
# (nor in the live view and the reports built on it).
# Called at the end of the top-level CMakeLists.txt, once every target exists.
function(meltrig_check_dependency_rule)
  set(libs meltrig_dataset meltrig_sync meltrig_analysis)
  # The view and report libraries where the project has them (the rule's own test project may not).
  foreach(lib meltrig_view meltrig_report_assets meltrig_report)
    if(TARGET ${lib})
      list(APPEND libs ${lib})
    endif()
  endforeach()
  foreach(lib IN LISTS libs)
    meltrig_check_forbidden_links(${lib}
      FORBIDDEN_TARGETS meltrig_targets meltrig_fw meltrig_rig PkgConfig::SERIALPORT
                        PkgConfig::LIBUSB
      FORBIDDEN_PATTERNS "serialport" "usb-1\\.0" "libusb")
  endforeach()
endfunction()
