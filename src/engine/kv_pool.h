// KvPool: the engine's paged KV memory, one buffer preallocated at start and cut into blocks.
//
// Layout: [block][layer][K|V][slot][kv_dim] floats, so one block (block_size tokens of K and V
// for every layer) is one contiguous range: copy-on-write is one memcpy, and a block moves to
// another tier or instance as a single span.
#pragma once

#include <cstdint>
#include <span>

#include "core/aligned_buffer.h"
#include "core/status.h"
#include "model/model.h"

namespace infergrid {

class KvPool {
 public:
  KvPool(const ModelConfig& config, int block_size, int n_blocks);

  // Bytes of one block for this model and block size.
  static size_t block_bytes(const ModelConfig& config, int block_size);

  int n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  size_t block_bytes() const { return block_floats_ * sizeof(float); }
  size_t total_bytes() const { return block_bytes() * static_cast<size_t>(n_blocks_); }
  KvStorage storage();
  std::span<float> block(int32_t b) {
    return {data_.data() + static_cast<size_t>(b) * block_floats_, block_floats_};
  }
  void copy_block(int32_t from, int32_t to);

 private:
  int block_size_;
  int n_blocks_;
  int n_layer_;
  int kv_dim_;
  size_t block_floats_;
  AlignedBuffer<float> data_;
};

}  // namespace infergrid
