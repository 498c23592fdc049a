# The op test runs once per backend; the CUDA case reports SKIPPED (exit 77)
# on machines without a GPU or without the plugin.
add_test(NAME test_backend_ops_cuda COMMAND test_backend_ops cuda)
set_tests_properties(test_backend_ops_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
  ENVIRONMENT "FMD_BACKEND_PATH=${PROJECT_BINARY_DIR}")
# The CPU backend again with its other GEMM provider, so both stay correct.
add_test(NAME test_backend_ops_openblas COMMAND test_backend_ops cpu)
set_tests_properties(test_backend_ops_openblas PROPERTIES TIMEOUT 600 ENVIRONMENT "FMD_CPU_GEMM=openblas")
# The network engine and teacher-training tests on the CUDA backend (the
# real plugin from the build directory): SKIPPED without a GPU.
foreach(t test_nn_layers test_nn_models test_train)
  add_test(NAME ${t}_cuda COMMAND ${t})
  set_tests_properties(${t}_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
    ENVIRONMENT "FMD_TEST_BACKEND=cuda;FMD_BACKEND_PATH=${PROJECT_BINARY_DIR}")
endforeach()
