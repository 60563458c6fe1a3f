#include "kvstore/block_key.h"

#define XXH_STATIC_LINKING_ONLY  // exposes XXH3_state_t, so the state can live on the stack
#include <xxhash.h>

namespace infergrid {

uint64_t block_key(uint64_t parent_key, std::span<const int32_t> tokens, uint64_t fingerprint) {
  XXH3_state_t state;
  XXH3_64bits_reset_withSeed(&state, fingerprint);
  XXH3_64bits_update(&state, &parent_key, sizeof(parent_key));
  XXH3_64bits_update(&state, tokens.data(), tokens.size_bytes());
  const uint64_t key = XXH3_64bits_digest(&state);
  return key == kRootBlockKey ? 1 : key;
}

uint64_t kv_block_checksum(uint64_t key, std::span<const int32_t> tokens,
                           std::span<const uint8_t> payload) {
  XXH3_state_t state;
  XXH3_64bits_reset_withSeed(&state, key);
  XXH3_64bits_update(&state, tokens.data(), tokens.size_bytes());
  XXH3_64bits_update(&state, payload.data(), payload.size());
  return XXH3_64bits_digest(&state);
}

uint64_t kv_layout_tag(const KvBlockLayout& l) {
  // The f32 tag is the one tiers written before 16-bit pools hold; f16 and bf16 (both two
  // bytes) add their type. An int8 block's bytes do not depend on the engine type it was
  // encoded from, so every engine type shares the int8 tag.
  const int32_t f32_shape[] = {l.block_size, l.n_layer, l.kv_dim, 2,
                               static_cast<int32_t>(sizeof(float))};
  const int32_t half_shape[] = {
      l.block_size, l.n_layer, l.kv_dim, 2, 2, 0x160 + static_cast<int32_t>(l.kv_type)};
  const int32_t int8_shape[] = {l.block_size, l.n_layer, l.kv_dim, 2, 1, l.head_dim, 0x18};
  if (l.codec == KvCodec::kInt8) return block_key(kRootBlockKey, int8_shape, l.model_fingerprint);
  if (l.kv_type == KvType::kF32) return block_key(kRootBlockKey, f32_shape, l.model_fingerprint);
  return block_key(kRootBlockKey, half_shape, l.model_fingerprint);
}

}  // namespace infergrid
