include(GoogleTest)
find_package(GTest REQUIRED)

# wand_add_test(NAME SOURCES a.cpp b.cpp LIBS wand_memory LABELS memory [gpu])
# Registers every TEST of the binary with ctest, labelled, so `ctest -L memory`
# runs one area alone.
function(wand_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_definitions(${name} PRIVATE
    WAND_GOLDEN_DIR_DEFAULT="${WAND_GOLDEN_DIR}"
    WAND_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    WAND_BINARY_DIR="${CMAKE_BINARY_DIR}")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()

# Precompiles the LibTorch umbrella header for a target (compile time on 2 cores).
function(wand_torch_pch target)
  target_precompile_headers(${target} PRIVATE "${CMAKE_SOURCE_DIR}/common/torch_compat.h")
endfunction()
