// Tensor element types and their exact block layouts, byte for byte as ggml defines them, so
// tensors in GGUF files from the ecosystem are used in place without conversion.
//
// A quantized row of n elements is n / block_elems consecutive blocks. Each weight type has a
// "dot type": the format activations are converted to before a dot product with it (Q8_0 for
// Q4_0/Q8_0, Q8_K for the K-quants, F32 for float weights).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace infergrid {

// Values are ggml's type ids as stored in GGUF tensor infos.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

inline constexpr int kQK4_0 = 32;
inline constexpr int kQK8_0 = 32;
inline constexpr int kQK_K = 256;  // super-block size of the K-quants
inline constexpr int kKScaleBytes = 12;

#pragma pack(push, 1)
// 32 weights: w = (q - 8) * d, q in [0, 15]. qs[j] holds element j in its low nibble and
// element j + 16 in its high nibble.
struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// 32 weights: w = q * d.
struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

// 256 weights in 8 sub-blocks of 32: w = d * sc[j] * q - dmin * m[j], q in [0, 15], with 6-bit
// sub-block scales sc and mins m packed into `scales` (see get_scale_min_k4). qs holds 4 groups
// of 64 weights; in group g, byte l holds sub-block 2g element l (low nibble) and sub-block
// 2g+1 element l (high nibble).
struct BlockQ4_K {
  uint16_t d;     // fp16 super-block scale for scales
  uint16_t dmin;  // fp16 super-block scale for mins
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// 256 weights in 16 sub-blocks of 16: w = d * scales[j] * (q - 32), q 6 bits: low 4 bits in ql,
// high 2 bits in qh (ggml's interleaving, see dequantize_row_q6_K).
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;  // fp16
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activations for K-quant dot products: 256 values q * d, plus sums of each 16 for the mins.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(BlockQ8_K) == 292);
#pragma pack(pop)

struct TensorTypeTraits {
  const char* name;
  int64_t block_elems;
  size_t block_bytes;
  TensorType dot_type;
};

// nullopt for types we do not implement (still named when known, for error messages).
std::optional<TensorTypeTraits> tensor_type_traits(TensorType type);
bool is_supported_tensor_type(uint32_t raw_type);
// A name for any raw ggml type id, "type 99" when unknown.
std::string tensor_type_name(uint32_t raw_type);
std::optional<TensorType> tensor_type_from_name(std::string_view name);

// Bytes of a row of n elements; n must be a multiple of the block size.
size_t tensor_row_bytes(TensorType type, int64_t n);

// A CPU kernel table's repacked copy of a weight matrix (cpu_kernels.h, PackedKernel).
enum class PackedLayout : uint8_t {
  kNone,
  kRowGroup16,  // groups of 16 rows, quants interleaved 4 bytes per row (Q4_0, Q8_0, Q4_K, Q6_K)
};

}  // namespace infergrid
