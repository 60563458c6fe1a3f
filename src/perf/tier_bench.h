// KV-tier load bandwidth: how fast blocks come back from the shared DRAM tier and from the SSD
// tier, each next to the raw bandwidth of its medium measured in the same run (memcpy for
// DRAM; a large sequential read of a file with the page cache dropped, for the disk); int8
// DRAM loads counted in the f32 bytes they deliver after decoding; and the DRAM tier's put and
// get cost at a small and a large slot count (its index is O(1), so they should match).
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"

namespace infergrid {

struct TierBenchOptions {
  size_t block_bytes = size_t{1} << 20;  // one 16-token block of a 1B Llama in f32
  int blocks = 256;
  int block_tokens = 16;
  std::string disk_dir;  // default: a temporary directory
};

Result<std::string> run_tier_bench(const TierBenchOptions& options);

}  // namespace infergrid
