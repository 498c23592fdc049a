# Python bindings (bindings/python/fmd, ctypes) tested with pytest against the
# freshly built shared library, and the documentation checks.  Debian's
# python3 (with python3-numpy, python3-pytest, python3-torch) runs them.  Any
# non-zero pytest exit fails the ctest, including 5 ("no tests collected").
set(FMD_PY_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/python)
set(FMD_PY_ENV
  "FMD_LIBRARY=$<TARGET_FILE:fmd>"
  "PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python"
  "FMD_NUM_THREADS=1"
  "FMD_BACKEND=cpu"
  "FMD_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
# the C example run on the student the Python example saves (target name as
# examples/CMakeLists.txt makes it)
foreach(tgt example_embedded_sample embedded_sample)
  if(TARGET ${tgt})
    list(APPEND FMD_PY_ENV "FMD_EMBEDDED_SAMPLE=$<TARGET_FILE:${tgt}>")
    break()
  endif()
endforeach()
foreach(t core teacher student distiller data memory interrupt)
  add_test(NAME pytest_bindings_${t}
    COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider
            ${FMD_PY_TESTS}/test_bindings_${t}.py)
  set_tests_properties(pytest_bindings_${t} PROPERTIES ENVIRONMENT "${FMD_PY_ENV}" TIMEOUT 600)
endforeach()
add_test(NAME pytest_packaging
  COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${FMD_PY_TESTS}/test_packaging.py)
set_tests_properties(pytest_packaging PROPERTIES ENVIRONMENT "${FMD_PY_ENV}" TIMEOUT 600)
add_test(NAME pytest_docs_api
  COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${FMD_PY_TESTS}/test_docs_api.py)
set_tests_properties(pytest_docs_api PROPERTIES ENVIRONMENT "${FMD_PY_ENV}" TIMEOUT 120)
add_test(NAME pytest_examples
  COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${FMD_PY_TESTS}/test_examples.py)
set_tests_properties(pytest_examples PROPERTIES ENVIRONMENT "${FMD_PY_ENV}" TIMEOUT 600)
