{
  "targets": [
    {
      "target_name": "cohort_shm",
      "sources": ["native/cohort_shm.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags_cc": ["-std=c++17", "-O2"],
      "conditions": [["OS!='linux'", { "sources!": ["native/cohort_shm.cc"] }]]
    }
  ]
}
