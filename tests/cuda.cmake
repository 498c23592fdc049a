# tests/cuda.cmake - included by tests/CMakeLists.txt.  Builds the fake
# plugins that drive the plugin loader's error paths (tests/plugins/
# fake_plugin.c) and tells test_cuda_plugin where they and the real
# libfmd-cuda.so (when built) are.
set(FMD_FAKE_PLUGIN_DIR ${PROJECT_BINARY_DIR}/tests/fakeplugins)
set(FMD_FAKE_PLUGINS "")
foreach(variant abi_check:1 abi_fill:2 no_gpu:3 no_symbol:4)
  string(REPLACE ":" ";" pair ${variant})
  list(GET pair 0 vname)
  list(GET pair 1 vmode)
  add_library(fmd_fake_${vname} MODULE ${CMAKE_CURRENT_SOURCE_DIR}/plugins/fake_plugin.c)
  target_compile_definitions(fmd_fake_${vname} PRIVATE FAKE_MODE=${vmode})
  target_include_directories(fmd_fake_${vname} PRIVATE ${PROJECT_SOURCE_DIR}/include
                             ${PROJECT_SOURCE_DIR}/backends)
  set_target_properties(fmd_fake_${vname} PROPERTIES PREFIX "lib" OUTPUT_NAME fmd-fake-${vname}
                        LIBRARY_OUTPUT_DIRECTORY ${FMD_FAKE_PLUGIN_DIR})
  list(APPEND FMD_FAKE_PLUGINS fmd_fake_${vname})
endforeach()

if(TARGET test_cuda_plugin)
  add_dependencies(test_cuda_plugin ${FMD_FAKE_PLUGINS})
  target_compile_definitions(test_cuda_plugin PRIVATE FMD_FAKE_PLUGIN_DIR="${FMD_FAKE_PLUGIN_DIR}")
  target_link_libraries(test_cuda_plugin PRIVATE ${CMAKE_DL_LIBS})
  if(TARGET fmd_cuda)
    add_dependencies(test_cuda_plugin fmd_cuda)
    target_compile_definitions(test_cuda_plugin PRIVATE
      FMD_CUDA_PLUGIN_FILE="$<TARGET_FILE:fmd_cuda>")
  endif()
endif()

# The CUDA backend's own source compiled for the host over an emulation of
# the CUDA runtime, kernel language and cuBLAS (tests/plugins/cuda_emu.h):
# the op test and the cross-backend test run the plugin's code on machines
# without a GPU (CI), so its launch geometry, indexing, reductions and cuBLAS
# mapping are tested everywhere; the GPU runs the real one.
add_library(fmd_cuda_emu MODULE ${CMAKE_CURRENT_SOURCE_DIR}/plugins/cuda_emu_plugin.cc)
target_include_directories(fmd_cuda_emu BEFORE PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/plugins/emu_include)
target_include_directories(fmd_cuda_emu PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/backends
                           ${PROJECT_SOURCE_DIR}/lib)
set_target_properties(fmd_cuda_emu PROPERTIES PREFIX "lib" OUTPUT_NAME fmd-cuda-emu
  CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON LIBRARY_OUTPUT_DIRECTORY ${FMD_FAKE_PLUGIN_DIR})
foreach(t test_backend_ops test_backend_fused test_cross_backend)
  if(TARGET ${t})
    add_dependencies(${t} fmd_cuda_emu)
    if(t STREQUAL "test_cross_backend")
      add_test(NAME ${t}_emu COMMAND ${t} cpu cuda)
    else()
      add_test(NAME ${t}_emu COMMAND ${t} cuda)
    endif()
    set_tests_properties(${t}_emu PROPERTIES TIMEOUT 600 ENVIRONMENT
      "FMD_BACKEND_PATH=$<TARGET_FILE:fmd_cuda_emu>;FMD_SOURCE_DIR=${PROJECT_SOURCE_DIR};FMD_BUILD_DIR=${PROJECT_BINARY_DIR}")
  endif()
endforeach()

# The real plugin, looked up in the build directory: SKIPPED without a GPU.
if(TARGET test_cross_backend)
  set_property(TEST test_cross_backend APPEND PROPERTY ENVIRONMENT "FMD_BACKEND_PATH=${PROJECT_BINARY_DIR}")
endif()
if(TARGET test_backend_fused)
  add_test(NAME test_backend_fused_cuda COMMAND test_backend_fused cuda)
  set_tests_properties(test_backend_fused_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
    ENVIRONMENT "FMD_BACKEND_PATH=${PROJECT_BINARY_DIR}")
endif()

# The plugin exports exactly one symbol (static cudart and the kernels stay
# local through backends/cuda/cuda.map).
if(TARGET fmd_cuda)
  add_test(NAME test_cuda_plugin_exports COMMAND sh -c
    "out=$(nm -D --defined-only \"$1\" | awk '{print $3}' | sed 's/@.*//' | grep -v '^FMD_CUDA_0$' | sort -u); \
     if [ \"$out\" = fmd_backend_plugin_open ]; then echo \"exports: $out\"; else echo \"unexpected exports: $out\"; exit 1; fi"
    sh $<TARGET_FILE:fmd_cuda>)
endif()
