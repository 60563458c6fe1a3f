#include "kernels/packed_weights.h"

#include <cstdlib>
#include <cstring>

namespace infergrid {

AlignedBuffer<uint8_t> pack_weights_for(const CpuKernels& kernels, MatrixView& w) {
  AlignedBuffer<uint8_t> storage;
  const PackedKernel* packed = kernels.packed_for(w.type);
  const int64_t n_groups = w.n_rows / kPackedRowGroup;
  if (packed == nullptr || n_groups == 0) return storage;
  const size_t group_bytes = packed->group_bytes(w.n_cols);
  storage.resize(group_bytes * static_cast<size_t>(n_groups));
  for (int64_t g = 0; g < n_groups; ++g) {
    packed->pack_group(w.n_cols, w.row(g * kPackedRowGroup), w.row_bytes,
                       storage.data() + static_cast<size_t>(g) * group_bytes);
  }
  w.packed_layout = packed->layout;
  w.packed = storage.data();
  w.packed_rows = n_groups * kPackedRowGroup;
  return storage;
}

bool weight_repacking_enabled() {
  const char* env = std::getenv("INFERGRID_REPACK");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

}  // namespace infergrid
