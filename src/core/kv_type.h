// KvType: the element type of the engine's KV cache (--kv-cache-type).
//
// f16 is the default, as in llama.cpp and vLLM: it halves KV memory and attention reads next to
// f32, and K/V activations sit well inside its range. bf16 keeps f32's range at f16's size; f32
// is exact. Every store rounds to nearest even, so the same K/V values give the same bits on
// every path (batched, cached, one token).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace infergrid {

enum class KvType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline constexpr KvType kDefaultKvType = KvType::kF16;

inline constexpr size_t kv_type_bytes(KvType type) {
  return type == KvType::kF32 ? 4 : 2;
}

inline constexpr std::string_view kv_type_name(KvType type) {
  switch (type) {
    case KvType::kF32:
      return "f32";
    case KvType::kF16:
      return "f16";
    case KvType::kBF16:
      return "bf16";
  }
  return "?";
}

inline std::optional<KvType> parse_kv_type(std::string_view name) {
  for (KvType t : {KvType::kF32, KvType::kF16, KvType::kBF16}) {
    if (name == kv_type_name(t)) return t;
  }
  return std::nullopt;
}

}  // namespace infergrid
