// KvBlockCodec: the byte format of an engine KV block in the tiers below engine memory.
//
// kNative stores the engine's elements (f32, f16 or bf16: the pool's KvType) as they are. kInt8
// stores each group of `group` consecutive elements (one attention head of one token's K or V
// in one layer) as int8 with its own f32 scale: symmetric, scale = max|x| / 127, rounded half
// to even, so every value decodes to within scale/2 of what was stored (then rounded to the
// engine's type). A group holding a non-finite value, or whose values are all below 1e-30 in
// magnitude, is stored as zeros. A scale per head rather than one per block keeps a single
// outlier head from flattening the rest of the block to zero. Encoded layout: all scales (f32,
// in group order), then all int8 values (in the engine's order), so a block is one contiguous
// span.
//
// Invariants: encoded_bytes() is a pure function of the geometry, so a tier sized for it never
// sees a block of another size; the codec and the engine type are part of the tier's layout
// tag (see Scheduler::kv_layout_tag), so blocks of different formats never meet in one tier.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/kv_type.h"

namespace infergrid {

enum class KvCodec : uint8_t { kNative = 0, kInt8 = 1 };

std::string_view kv_codec_name(KvCodec codec);
std::optional<KvCodec> parse_kv_codec(std::string_view name);  // "native" | "int8"

class KvBlockCodec {
 public:
  // An engine block is block_elements elements of engine_type, cut into groups of `group`
  // elements (block_elements % group == 0).
  KvBlockCodec(KvCodec codec, KvType engine_type, size_t block_elements, size_t group);

  KvCodec codec() const { return codec_; }
  KvType engine_type() const { return engine_type_; }
  size_t block_elements() const { return block_elements_; }
  size_t engine_bytes() const { return block_elements_ * kv_type_bytes(engine_type_); }
  size_t encoded_bytes() const;
  // engine_block.size() == engine_bytes(); dest.size() == encoded_bytes().
  void encode(std::span<const uint8_t> engine_block, std::span<uint8_t> dest) const;
  void decode(std::span<const uint8_t> src, std::span<uint8_t> engine_block) const;
  // The plain reference the vector encoder is tested against (same bytes).
  void encode_scalar_for_testing(std::span<const uint8_t> engine_block,
                                 std::span<uint8_t> dest) const;

 private:
  void encode_with(std::span<const uint8_t> engine_block, std::span<uint8_t> dest,
                   float (*quantize_group)(const float*, size_t, int8_t*)) const;

  KvCodec codec_;
  KvType engine_type_;
  size_t block_elements_;
  size_t group_;
};

}  // namespace infergrid
