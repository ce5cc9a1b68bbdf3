// Function multi-versioning for the CPU hot loops: one binary carries an AVX-512, an AVX2+FMA
// and a baseline x86-64 build of each marked function and picks one at load time (ifunc), so a
// wheel built anywhere runs fast on this CPU and still runs on older ones. The maths they call
// is always_inline (TORCHEBM_HD), so it is vectorised inside each clone.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define TORCHEBM_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TORCHEBM_MULTIVERSION
#endif
