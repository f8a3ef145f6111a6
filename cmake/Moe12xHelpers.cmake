# Helpers for moe12x's CMakeLists.txt.

# moe12x_find_cutlass(<include-var> <util-include-var>)
#   MOE12X_CUTLASS_DIR (a CUTLASS tree: <dir>/include/cutlass/cutlass.h) wins; otherwise the
#   nvidia-cutlass wheel's cutlass_library/source, located with importlib.util.find_spec without
#   importing the package (its own imports are heavy: cuda-python, scipy, networkx, ...).
function(moe12x_find_cutlass include_var util_var)
  if(MOE12X_CUTLASS_DIR)
    set(_root "${MOE12X_CUTLASS_DIR}")
    set(_how "MOE12X_CUTLASS_DIR")
  else()
    if(NOT Python_EXECUTABLE)
      find_package(Python COMPONENTS Interpreter)
    endif()
    set(_pkg "")
    if(Python_EXECUTABLE)
      execute_process(
        COMMAND "${Python_EXECUTABLE}" -c
          "import importlib.util as u\ns = u.find_spec('cutlass_library')\nprint(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')"
        OUTPUT_VARIABLE _pkg OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
      if(NOT _rc EQUAL 0)
        set(_pkg "")
      endif()
    endif()
    set(_root "${_pkg}/source")
    set(_how "nvidia-cutlass wheel (cutlass_library in ${Python_EXECUTABLE})")
    if(NOT _pkg)
      set(_root "")
    endif()
  endif()
  if(NOT _root OR NOT EXISTS "${_root}/include/cutlass/cutlass.h"
     OR NOT EXISTS "${_root}/include/cute/tensor.hpp")
    message(FATAL_ERROR
      "moe12x: CUTLASS headers not found (tried ${_how}: '${_root}/include/cutlass/cutlass.h').\n"
      "Either `pip install nvidia-cutlass==4.2.0.0` into the Python that runs this build "
      "(pip install . does this automatically through build isolation), or pass "
      "-DMOE12X_CUTLASS_DIR=<CUTLASS source tree containing include/cutlass/cutlass.h>, "
      "or -DMOE12X_PREBUILT_LIBRARY=<libmoe12x.so> to skip compiling CUDA altogether.")
  endif()
  message(STATUS "moe12x: CUTLASS headers from ${_root}/include (${_how})")
  set(${include_var} "${_root}/include" PARENT_SCOPE)
  set(${util_var} "${_root}/tools/util/include" PARENT_SCOPE)
endfunction()

# moe12x_set_job_pool(<target>)
#   Ninja runs nproc+2 jobs by default; nvcc on CUTLASS code needs 3-6 GB each. Compile jobs of
#   <target> go through a pool of MOE12X_PARALLEL_JOBS, default = logical cores capped by
#   total memory / 4 GiB (at least 1).
function(moe12x_set_job_pool target)
  if(MOE12X_PARALLEL_JOBS)
    set(_jobs ${MOE12X_PARALLEL_JOBS})
  else()
    cmake_host_system_information(RESULT _cores QUERY NUMBER_OF_LOGICAL_CORES)
    cmake_host_system_information(RESULT _mem_mib QUERY TOTAL_PHYSICAL_MEMORY)
    math(EXPR _by_mem "${_mem_mib} / 4096")
    set(_jobs ${_cores})
    if(_by_mem LESS _jobs)
      set(_jobs ${_by_mem})
    endif()
    if(_jobs LESS 1)
      set(_jobs 1)
    endif()
  endif()
  set_property(GLOBAL APPEND PROPERTY JOB_POOLS moe12x_compile=${_jobs})
  set_property(TARGET ${target} PROPERTY JOB_POOL_COMPILE moe12x_compile)
  message(STATUS "moe12x: up to ${_jobs} parallel compile jobs (MOE12X_PARALLEL_JOBS)")
endfunction()

# moe12x_cythonize(<out-var> <pyx>)
#   Runs Cython (the one importable by Python_EXECUTABLE, >= 3.1) on <pyx>, generating C.
function(moe12x_cythonize out_var pyx)
  execute_process(COMMAND "${Python_EXECUTABLE}" -c "import Cython; print(Cython.__version__)"
                  OUTPUT_VARIABLE _cy_ver OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _rc ERROR_QUIET)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "moe12x: Cython is not importable by ${Python_EXECUTABLE} "
                        "(pip install 'cython>=3.1')")
  endif()
  if(_cy_ver VERSION_LESS 3.1)
    message(FATAL_ERROR "moe12x: Cython ${_cy_ver} found, >= 3.1 required")
  endif()
  if(NOT EXISTS "${pyx}")
    message(FATAL_ERROR "moe12x: ${pyx} not found")
  endif()
  message(STATUS "moe12x: Cython ${_cy_ver}")
  get_filename_component(_name "${pyx}" NAME_WE)
  get_filename_component(_dir "${pyx}" DIRECTORY)
  get_filename_component(_pkgparent "${_dir}" DIRECTORY)
  set(_c "${CMAKE_CURRENT_BINARY_DIR}/${_name}.c")
  file(GLOB _deps CONFIGURE_DEPENDS "${_dir}/*.pxd" "${_dir}/*.pxi")
  add_custom_command(
    OUTPUT "${_c}"
    COMMAND "${Python_EXECUTABLE}" -m cython -3 --fast-fail
            -I "${_dir}" -I "${_pkgparent}" "${pyx}" -o "${_c}"
    DEPENDS "${pyx}" ${_deps}
    WORKING_DIRECTORY "${_pkgparent}"
    COMMENT "Cythonizing ${pyx}"
    VERBATIM)
  set(${out_var} "${_c}" PARENT_SCOPE)
endfunction()
