// KvPool: the engine's paged KV memory, one buffer preallocated at start and cut into blocks.
//
// Layout: [block][layer][K|V][slot][kv_dim] elements of the pool's KvType, so one block
// (block_size tokens of K and V for every layer) is one contiguous range: copy-on-write is one
// memcpy, and a block moves to another tier or instance as a single span of bytes.
#pragma once

#include <cstdint>
#include <span>

#include "core/aligned_buffer.h"
#include "core/kv_type.h"
#include "core/status.h"
#include "model/model.h"

namespace infergrid {

class KvPool {
 public:
  KvPool(const ModelConfig& config, int block_size, int n_blocks, KvType type);

  // Elements (of any KvType) and bytes of one block for this model and block size.
  static size_t block_elements(const ModelConfig& config, int block_size);
  static size_t block_bytes(const ModelConfig& config, int block_size, KvType type) {
    return block_elements(config, block_size) * kv_type_bytes(type);
  }

  int n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  KvType type() const { return type_; }
  size_t block_bytes() const { return block_bytes_; }
  size_t total_bytes() const { return block_bytes_ * static_cast<size_t>(n_blocks_); }
  KvStorage storage();
  std::span<uint8_t> block(int32_t b) {
    return {data_.data() + static_cast<size_t>(b) * block_bytes_, block_bytes_};
  }
  void copy_block(int32_t from, int32_t to);

 private:
  int block_size_;
  int n_blocks_;
  int n_layer_;
  int kv_dim_;
  KvType type_;
  size_t block_bytes_;
  AlignedBuffer<uint8_t> data_;
};

}  // namespace infergrid
