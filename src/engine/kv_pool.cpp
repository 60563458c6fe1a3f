#include "engine/kv_pool.h"

#include <cstring>

namespace infergrid {

size_t KvPool::block_elements(const ModelConfig& config, int block_size) {
  return static_cast<size_t>(config.n_layer) * 2 * block_size * config.kv_dim();
}

KvPool::KvPool(const ModelConfig& config, int block_size, int n_blocks, KvType type)
    : block_size_(block_size),
      n_blocks_(n_blocks),
      n_layer_(config.n_layer),
      kv_dim_(config.kv_dim()),
      type_(type),
      block_bytes_(block_bytes(config, block_size, type)) {
  data_.resize(block_bytes_ * static_cast<size_t>(n_blocks));
}

KvStorage KvPool::storage() {
  const int64_t slab = static_cast<int64_t>(block_size_) * kv_dim_;  // one layer's K (or V)
  KvStorage s;
  s.k_base = data_.data();
  s.v_base = data_.data() + slab * static_cast<int64_t>(kv_type_bytes(type_));
  s.layer_stride = 2 * slab;
  s.block_stride = static_cast<int64_t>(block_bytes_ / kv_type_bytes(type_));
  s.row_stride = kv_dim_;
  s.block_size = block_size_;
  s.type = type_;
  return s;
}

void KvPool::copy_block(int32_t from, int32_t to) {
  std::memcpy(block(to).data(), block(from).data(), block_bytes());
}

}  // namespace infergrid
