// Block keys and layout tags: how every tier, and later the router and other instances, name a
// block of KV without linking the engine.
//
// A block's key is hash(parent key, its block_size token ids, model fingerprint), so equal
// prefixes give equal keys in every process and different models never collide; 0 is the root
// (the parent of a sequence's first block) and never a block's key. A layout tag says what a
// stored block's bytes mean (model, block size, KV element type, tier codec): tiers only match
// blocks of one tag, so blocks of different formats never meet.
#pragma once

#include <cstdint>
#include <span>

#include "core/kv_type.h"
#include "kvstore/kv_codec.h"

namespace infergrid {

inline constexpr uint64_t kRootBlockKey = 0;

uint64_t block_key(uint64_t parent_key, std::span<const int32_t> tokens, uint64_t fingerprint);

// A stored block's checksum: XXH3 of its tokens and payload seeded with its key, the same in
// every tier and on the wire (kvstore/kv_transfer_frame.h), so a block moves between them
// with its checksum unchanged.
uint64_t kv_block_checksum(uint64_t key, std::span<const int32_t> tokens,
                           std::span<const uint8_t> payload);

// What a stored block holds: one model's K and V of block_size tokens in every layer.
struct KvBlockLayout {
  uint64_t model_fingerprint = 0;
  int block_size = 0;
  int n_layer = 0;
  int kv_dim = 0;    // n_kv_heads * head_dim
  int head_dim = 0;  // the int8 codec's scale group
  KvType kv_type = KvType::kF32;
  KvCodec codec = KvCodec::kNative;
};

uint64_t kv_layout_tag(const KvBlockLayout& layout);

}  // namespace infergrid
