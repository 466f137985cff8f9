# Finds every dependency once. Debian 12 packages on CPU machines; on the GPU
# machine LibTorch comes from pip's torch (CMAKE_PREFIX_PATH) and liburing /
# libsystemd from .debs unpacked into a prefix (scripts/gpu-build.sh).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt QUIET)

# Boost.Asio is header-only.
find_package(Boost 1.74 REQUIRED)

if(WAND_IO_URING)
  pkg_check_modules(URING IMPORTED_TARGET liburing)
  if(NOT URING_FOUND)
    message(STATUS "wand: liburing not found, io_uring engine disabled (pread fallback only)")
    set(WAND_IO_URING OFF)
  endif()
endif()

pkg_check_modules(SYSTEMD IMPORTED_TARGET libsystemd)
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
pkg_check_modules(LIBAV IMPORTED_TARGET libavformat libavcodec libswscale libavutil)

if(NOT WAND_ONLY_MEMORY)
  find_package(Torch REQUIRED)
  message(STATUS "wand: LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")
  # Note [fmt shim]: pip's LibTorch ships its own fmt headers (v12) in its include
  # directory, which would shadow the system fmt that the system spdlog was built
  # against. A directory linking to the system fmt goes ahead of LibTorch's on
  # every target. (Debian's LibTorch uses the system fmt: nothing to do there.)
  foreach(d ${TORCH_INCLUDE_DIRS})
    if(EXISTS "${d}/fmt/core.h" AND EXISTS /usr/include/fmt/core.h AND NOT d STREQUAL "/usr/include")
      set(WAND_FMT_SHIM ${CMAKE_BINARY_DIR}/fmt-shim)
      file(MAKE_DIRECTORY ${WAND_FMT_SHIM})
      if(NOT EXISTS ${WAND_FMT_SHIM}/fmt)
        file(CREATE_LINK /usr/include/fmt ${WAND_FMT_SHIM}/fmt SYMBOLIC)
      endif()
      include_directories(BEFORE ${WAND_FMT_SHIM})
      message(STATUS "wand: LibTorch bundles fmt in ${d}; system fmt put first for spdlog")
      break()
    endif()
  endforeach()
  # Note [libstdc++ first]: pip's libtorch_cpu.so / libtorch.so (2.11+cu130) export
  # their own static copy of std::filesystem (101 / 64 _ZNSt10filesystem symbols).
  # Ahead of libstdc++.so.6 in the lookup order they interpose on it, and tests
  # crash (jump to 0) in fs::remove_all / create_directories / path ops (t5 helper
  # saw it in pth_test, t5_make_test; LD_PRELOAD of libstdc++ fixed them all).
  # The GPU machine's g++ links the C++ runtime from a static archive there, so
  # the linker even resolves those symbols to LibTorch at link time. Naming the
  # shared libstdc++.so.6 first (no-as-needed) makes it the definer and puts it
  # first in NEEDED.
  if(Torch_VERSION VERSION_GREATER_EQUAL 2.0 AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    find_file(WAND_LIBSTDCXX_SO libstdc++.so.6
              PATHS /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib NO_DEFAULT_PATH)
    if(WAND_LIBSTDCXX_SO)
      add_link_options("LINKER:--push-state,--no-as-needed" "${WAND_LIBSTDCXX_SO}" "LINKER:--pop-state")
      message(STATUS "wand: ${WAND_LIBSTDCXX_SO} linked first (Note [libstdc++ first])")
    endif()
  endif()
endif()

set(WAND_HAVE_CUDA OFF)
if(WAND_CUDA)
  if(NOT CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    set(WAND_HAVE_CUDA ON)
    message(STATUS "wand: CUDA ${CUDAToolkit_VERSION} found, CUDA code enabled")
  else()
    message(STATUS "wand: CUDA toolkit not found, CUDA code disabled")
  endif()
endif()

set(WAND_HAVE_NCCL OFF)
if(WAND_HAVE_CUDA AND WAND_NCCL)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(WAND_HAVE_NCCL ON)
    add_library(wand_nccl_dep INTERFACE)
    target_include_directories(wand_nccl_dep INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(wand_nccl_dep INTERFACE ${NCCL_LIBRARY})
    message(STATUS "wand: NCCL found at ${NCCL_LIBRARY}")
  endif()
endif()

# Is the LibTorch we build against CUDA-enabled? (pip's torch on the GPU machine.)
set(WAND_TORCH_CUDA OFF)
if(TARGET torch AND TORCH_CUDA_LIBRARIES)
  set(WAND_TORCH_CUDA ON)
endif()
