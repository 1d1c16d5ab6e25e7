# Build-time embedding of web assets (page template, scripts, styles, uPlot) into a C++ library, so
# that the program never looks files up at run time and a report written anywhere is the same.
#
#   meltrig_embed_assets(TARGET name NAMESPACE ns FILES a.js b.css ... [SOURCES more.cpp ...])
#
# generates ${CMAKE_CURRENT_BINARY_DIR}/name.cpp defining
#   std::span<const meltrig::report::Asset> ns::embedded_assets()
# (one entry per file: its base name and its bytes) and builds it, with SOURCES, as the static
# library `name`.
# The source is regenerated whenever one of the files changes (cmake -P embed_assets_gen.cmake).
set(MELTRIG_EMBED_GENERATOR ${CMAKE_CURRENT_LIST_DIR}/embed_assets_gen.cmake)

function(meltrig_embed_assets)
  cmake_parse_arguments(ARG "" "TARGET;NAMESPACE" "FILES;SOURCES" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${ARG_TARGET}.cpp)
  set(files)
  foreach(f IN LISTS ARG_FILES)
    get_filename_component(abs ${f} ABSOLUTE)
    list(APPEND files ${abs})
  endforeach()
  string(REPLACE ";" "|" file_arg "${files}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAMESPACE=${ARG_NAMESPACE} "-DFILES=${file_arg}"
            -P ${MELTRIG_EMBED_GENERATOR}
    DEPENDS ${files} ${MELTRIG_EMBED_GENERATOR}
    COMMENT "Embedding ${ARG_TARGET} assets"
    VERBATIM)
  add_library(${ARG_TARGET} STATIC ${out} ${ARG_SOURCES})
endfunction()
