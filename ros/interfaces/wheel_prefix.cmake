# Used only when building these packages against the ROS 2 wheels from PyPI (physioser's
# `make ros-interfaces`, passed as CMAKE_PROJECT_INCLUDE): the wheels' exported CMake targets name
# the include directories of the machine that built them (/opt/python/...), which do not exist
# here and make CMake refuse to generate. Drop those entries at the end of the configure step;
# the generators find this Python's headers themselves.
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _physioser_drop_wheel_build_paths)
function(_physioser_drop_wheel_build_paths)
  get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs)
      list(FILTER dirs EXCLUDE REGEX "^/opt/python/")
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
    endif()
  endforeach()
endfunction()
