#include "kvstore/kv_codec.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

namespace infergrid {

std::string_view kv_codec_name(KvCodec codec) {
  return codec == KvCodec::kInt8 ? "int8" : "f32";
}

std::optional<KvCodec> parse_kv_codec(std::string_view name) {
  if (name == "f32") return KvCodec::kF32;
  if (name == "int8") return KvCodec::kInt8;
  return std::nullopt;
}

KvBlockCodec::KvBlockCodec(KvCodec codec, size_t block_floats, size_t group)
    : codec_(codec), block_floats_(block_floats), group_(group) {
  assert(group_ > 0 && block_floats_ % group_ == 0);
}

size_t KvBlockCodec::encoded_bytes() const {
  if (codec_ == KvCodec::kF32) return block_floats_ * sizeof(float);
  return block_floats_ / group_ * sizeof(float) + block_floats_;
}

// The loops are written so the compiler vectorizes them (no branches, no calls per element).
void KvBlockCodec::encode(std::span<const float> src, std::span<uint8_t> dest) const {
  assert(src.size() == block_floats_ && dest.size() == encoded_bytes());
  if (codec_ == KvCodec::kF32) {
    std::memcpy(dest.data(), src.data(), dest.size());
    return;
  }
  const size_t n_groups = block_floats_ / group_;
  auto* values = reinterpret_cast<int8_t*>(dest.data() + n_groups * sizeof(float));
  for (size_t g = 0; g < n_groups; ++g) {
    const float* x = src.data() + g * group_;
    float max_abs = 0.0f;
    for (size_t i = 0; i < group_; ++i) max_abs = std::max(max_abs, std::fabs(x[i]));
    // A non-finite value cannot be scaled: it must not poison its group's scale, and it is
    // stored saturated (fmin/fmax return the number when one argument is NaN), so nothing
    // undefined reaches the int8 conversion. The engine never produces one from finite weights.
    if (!std::isfinite(max_abs)) max_abs = 0.0f;
    const float scale = max_abs / 127.0f;
    const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
    std::memcpy(dest.data() + g * sizeof(float), &scale, sizeof(float));
    int8_t* q = values + g * group_;
    for (size_t i = 0; i < group_; ++i) {
      const float scaled = std::fmax(-127.0f, std::fmin(127.0f, x[i] * inverse));
      q[i] = static_cast<int8_t>(std::nearbyint(scaled));
    }
  }
}

void KvBlockCodec::decode(std::span<const uint8_t> src, std::span<float> dest) const {
  assert(src.size() == encoded_bytes() && dest.size() == block_floats_);
  if (codec_ == KvCodec::kF32) {
    std::memcpy(dest.data(), src.data(), src.size());
    return;
  }
  const size_t n_groups = block_floats_ / group_;
  const auto* values = reinterpret_cast<const int8_t*>(src.data() + n_groups * sizeof(float));
  for (size_t g = 0; g < n_groups; ++g) {
    float scale;
    std::memcpy(&scale, src.data() + g * sizeof(float), sizeof(float));
    const int8_t* q = values + g * group_;
    float* y = dest.data() + g * group_;
    for (size_t i = 0; i < group_; ++i) y[i] = static_cast<float>(q[i]) * scale;
  }
}

}  // namespace infergrid
