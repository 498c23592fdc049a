# Data-parallel tests under mpirun (tests/mpi/), registered only when the MPI
# transport is built and mpirun is found: without them the tests do not
# exist (they are not counted as passed).  --oversubscribe: more ranks than
# cores on the 2-core CI machines; --allow-run-as-root for CI containers.
find_program(FMD_MPIRUN NAMES mpirun mpiexec)
if(FMD_HAVE_MPI AND FMD_MPIRUN AND TARGET fmd_mpi)
  set(FMD_MPIRUN_FLAGS --allow-run-as-root --oversubscribe)
  add_executable(mpi_distill ${CMAKE_CURRENT_SOURCE_DIR}/mpi/mpi_distill.c
                 ${CMAKE_CURRENT_SOURCE_DIR}/testutil.c)
  target_link_libraries(mpi_distill PRIVATE fmd_internal)
  target_include_directories(mpi_distill PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_dependencies(mpi_distill fmd_mpi)
  foreach(np 2 3)
    add_test(NAME mpi_distill_np${np}
             COMMAND ${FMD_MPIRUN} ${FMD_MPIRUN_FLAGS} -np ${np} $<TARGET_FILE:mpi_distill>)
    set_tests_properties(mpi_distill_np${np} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
      PROCESSORS ${np}
      ENVIRONMENT "FMD_COMM_PATH=${PROJECT_BINARY_DIR};FMD_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE")
  endforeach()
else()
  message(STATUS "libfmd: MPI tests not registered (needs libfmd-mpi.so and mpirun)")
endif()
if(FMD_HAVE_MPI AND FMD_MPIRUN AND TARGET fmd_mpi AND TARGET fmd_cli)
  add_test(NAME mpi_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/mpi/cli_mpi.sh ${FMD_MPIRUN}
                                   $<TARGET_FILE:fmd_cli>)
  set_tests_properties(mpi_cli PROPERTIES TIMEOUT 300 PROCESSORS 2
    ENVIRONMENT "FMD_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE")
endif()
if(FMD_HAVE_MPI AND FMD_MPIRUN AND TARGET fmd_mpi AND EXISTS ${FMD_TEST_PYTHON})
  add_test(NAME mpi_python_np2 COMMAND ${FMD_MPIRUN} --allow-run-as-root --oversubscribe -np 2
                                       ${FMD_TEST_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/py_mpi.py)
  set_tests_properties(mpi_python_np2 PROPERTIES TIMEOUT 300 PROCESSORS 2
    ENVIRONMENT "FMD_LIBRARY=$<TARGET_FILE:fmd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python;FMD_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE")
  add_test(NAME mpi_abort COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/mpi/abort.sh ${FMD_MPIRUN}
                                     ${FMD_TEST_PYTHON})
  set_tests_properties(mpi_abort PROPERTIES TIMEOUT 120 PROCESSORS 2
    ENVIRONMENT "FMD_LIBRARY=$<TARGET_FILE:fmd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/bindings/python;FMD_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE")
endif()
