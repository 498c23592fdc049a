# ABI checks: the header compiles alone as C99 and as C++; the shared
# library exports only fmd_* with SONAME libfmd.so.0; an example builds and
# runs against the installed tree through find_package and pkg-config.
add_test(NAME test_header_c99
  COMMAND ${CMAKE_C_COMPILER} -std=c99 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only
          -I${PROJECT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/header_check.c)
add_test(NAME test_header_cxx
  COMMAND ${CMAKE_CXX_COMPILER} -std=c++11 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only
          -I${PROJECT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/header_check.cpp)
add_test(NAME test_symbols COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_symbols.sh $<TARGET_FILE:fmd>)
add_test(NAME test_install COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_install.sh ${PROJECT_BINARY_DIR}
                                   ${PROJECT_SOURCE_DIR})
set_tests_properties(test_install PROPERTIES TIMEOUT 300)
# docs/api.md is generated from the header's comments: a header change that
# forgot to regenerate it fails here (python3 scripts/gen_api_md.py mends it).
add_test(NAME test_api_md_current
  COMMAND ${FMD_TEST_PYTHON} ${PROJECT_SOURCE_DIR}/scripts/gen_api_md.py --check)
# The option tables in docs/ are generated from the library's own tables
# (`fmd options X --markdown`): drift fails here (scripts/gen_option_docs.py mends it).
add_test(NAME test_option_docs_current
  COMMAND ${FMD_TEST_PYTHON} ${PROJECT_SOURCE_DIR}/scripts/gen_option_docs.py --check
          --fmd $<TARGET_FILE:fmd_cli>)
# The public ABI against the committed baseline tests/abi/libfmd.abi
# (abidiff; skipped when abigail-tools are missing).  Regenerate it with
#   scripts/abi.sh dump build/libfmd.so
find_program(FMD_ABIDIFF abidiff)
if(FMD_ABIDIFF AND FMD_ABI_DEBUGINFO)
  add_test(NAME test_abi_baseline
    COMMAND ${PROJECT_SOURCE_DIR}/scripts/abi.sh check $<TARGET_FILE:fmd>)
endif()
