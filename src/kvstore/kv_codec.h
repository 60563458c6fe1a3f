// KvBlockCodec: the byte format of an engine KV block in the tiers below engine memory.
//
// kF32 stores the engine's floats as they are. kInt8 stores each group of `group` consecutive
// floats (one attention head of one token's K or V in one layer) as int8 with its own f32
// scale: symmetric, scale = max|x| / 127, rounded half to even, so every value decodes to
// within scale/2 of what was stored. A group holding a non-finite value, or whose values are
// all below 1e-30 in magnitude, is stored as zeros. A scale
// per head rather than one per block keeps a single outlier head from flattening the rest of the
// block to zero. Encoded layout: all scales (f32, in group order), then all int8 values (in the
// engine's order), so a block is one contiguous span.
//
// Invariants: encoded_bytes() is a pure function of the geometry, so a tier sized for it never
// sees a block of another size; the codec is part of the tier's layout tag (see
// Scheduler::kv_layout_tag), so int8 and f32 blocks never meet in one tier.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace infergrid {

enum class KvCodec : uint8_t { kF32 = 0, kInt8 = 1 };

std::string_view kv_codec_name(KvCodec codec);
std::optional<KvCodec> parse_kv_codec(std::string_view name);  // "f32" | "int8"

class KvBlockCodec {
 public:
  // A block is block_floats floats cut into groups of `group` floats (block_floats % group == 0).
  KvBlockCodec(KvCodec codec, size_t block_floats, size_t group);

  KvCodec codec() const { return codec_; }
  size_t block_floats() const { return block_floats_; }
  size_t encoded_bytes() const;
  // dest.size() == encoded_bytes(); src.size() == block_floats().
  void encode(std::span<const float> src, std::span<uint8_t> dest) const;
  void decode(std::span<const uint8_t> src, std::span<float> dest) const;
  // The plain reference the vector encoder is tested against (same bytes).
  void encode_scalar_for_testing(std::span<const float> src, std::span<uint8_t> dest) const;

 private:
  void encode_with(std::span<const float> src, std::span<uint8_t> dest,
                   float (*quantize_group)(const float*, size_t, int8_t*)) const;

  KvCodec codec_;
  size_t block_floats_;
  size_t group_;
};

}  // namespace infergrid
