# The network engine's PyTorch parity test: tests/nn_driver (a C program that
# runs one model from safetensors inputs) driven by
# tests/python/test_nn_parity.py with Debian's python3-torch as the oracle.
add_executable(nn_driver ${CMAKE_CURRENT_SOURCE_DIR}/nn_driver.c)
target_link_libraries(nn_driver PRIVATE fmd_internal)
add_test(NAME test_nn_parity
  COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider
          ${CMAKE_CURRENT_SOURCE_DIR}/python/test_nn_parity.py)
set_tests_properties(test_nn_parity PROPERTIES TIMEOUT 900
  ENVIRONMENT "FMD_NN_DRIVER=$<TARGET_FILE:nn_driver>;FMD_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
