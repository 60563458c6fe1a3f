#include "kernels/packed_weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace infergrid {

AlignedBuffer<uint8_t> pack_weights_for(const CpuKernels& kernels, MatrixView& w) {
  AlignedBuffer<uint8_t> storage;
  const PackedKernel* packed = kernels.packed_for(w.type);
  const int64_t n_groups = w.n_rows / kPackedRowGroup;
  if (packed == nullptr || n_groups == 0) return storage;
  const size_t group_bytes = packed->group_bytes(w.n_cols);
  storage.resize(group_bytes * static_cast<size_t>(n_groups));
  // Huge pages for the copy: a 1 GiB model is 260k page faults in 4 KiB pages, which took
  // longer than the packing itself.
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto begin = (reinterpret_cast<uintptr_t>(storage.data()) + kHuge - 1) / kHuge * kHuge;
  const auto end = (reinterpret_cast<uintptr_t>(storage.data()) + storage.size()) / kHuge * kHuge;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  // Every core packs a slice of the groups (a load-time cost of about a second per GiB on one).
  const int64_t n_threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1,
                                                std::max<int64_t>(1, n_groups / 64));
  auto pack_range = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      packed->pack_group(w.n_cols, w.row(g * kPackedRowGroup), w.row_bytes,
                         storage.data() + static_cast<size_t>(g) * group_bytes);
    }
  };
  std::vector<std::thread> workers;
  const int64_t per_thread = (n_groups + n_threads - 1) / n_threads;
  for (int64_t t = 1; t < n_threads; ++t) {
    workers.emplace_back(pack_range, std::min(n_groups, t * per_thread),
                         std::min(n_groups, (t + 1) * per_thread));
  }
  pack_range(0, std::min(n_groups, per_thread));
  for (std::thread& worker : workers) worker.join();
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
