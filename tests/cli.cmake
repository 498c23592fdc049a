# Tests of the `fmd` command-line tool (tools/fmd): a shell-driven error-path
# test (runs under the sanitizer build too) and the python-driven end-to-end
# tests (pytest_ prefix: the sanitizer run skips those).
if(TARGET fmd_cli)
  add_test(NAME cli_errors COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/errors.sh $<TARGET_FILE:fmd_cli>)
  set_tests_properties(cli_errors PROPERTIES TIMEOUT 300)
  if(EXISTS ${FMD_TEST_PYTHON})
    add_test(NAME pytest_cli
      COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_cli.py)
    set_tests_properties(pytest_cli PROPERTIES TIMEOUT 900
      ENVIRONMENT "FMD_CLI=$<TARGET_FILE:fmd_cli>")
    add_test(NAME pytest_cli_student_made
      COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_student_made.py)
    set_tests_properties(pytest_cli_student_made PROPERTIES TIMEOUT 300
      ENVIRONMENT "FMD_CLI=$<TARGET_FILE:fmd_cli>")
    add_test(NAME pytest_readme
      COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_readme.py)
    set_tests_properties(pytest_readme PROPERTIES TIMEOUT 900
      ENVIRONMENT "FMD_CLI=$<TARGET_FILE:fmd_cli>")
    add_test(NAME pytest_scripts
      COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_scripts.py)
    set_tests_properties(pytest_scripts PROPERTIES TIMEOUT 120)
    add_test(NAME pytest_cli_signals
      COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_signals.py)
    set_tests_properties(pytest_cli_signals PROPERTIES TIMEOUT 300
      ENVIRONMENT "FMD_CLI=$<TARGET_FILE:fmd_cli>")
    add_test(NAME pytest_cli_train_resume
      COMMAND ${FMD_TEST_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_train_resume.py)
    set_tests_properties(pytest_cli_train_resume PROPERTIES TIMEOUT 300
      ENVIRONMENT "FMD_CLI=$<TARGET_FILE:fmd_cli>")
  endif()
endif()
