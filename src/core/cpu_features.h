// CPU feature detection, done once; kernels dispatch on it in one place (kernels/dispatch).
#pragma once

#include <string>

namespace infergrid {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;

  bool has_avx2_path() const { return avx2 && fma && f16c; }
  bool has_avx512_path() const { return avx512f && avx512bw && avx512vl && has_avx2_path(); }
  std::string describe() const;
};

const CpuFeatures& cpu_features();

}  // namespace infergrid
