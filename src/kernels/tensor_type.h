// Tensor element types and their exact block layouts, byte for byte as ggml defines them, so
// tensors in GGUF files from the ecosystem are used in place without conversion.
//
// A quantized row of n elements is n / block_elems consecutive blocks. Each weight type has a
// "dot type": the format activations are converted to before a dot product with it (Q8_0 for
// the 32-element types, Q8_K for the 256-element K-quants and IQ4_XS, F32 for float weights).
// ggml pairs Q4_1/Q5_1 with Q8_1 (Q8_0 plus a stored sum); here their dots sum the activation
// codes themselves, so one activation format serves every 32-element type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infergrid {

// Values are ggml's type ids as stored in GGUF tensor infos.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kBF16 = 30,
};

inline constexpr int kQK4_0 = 32;
inline constexpr int kQK4_1 = 32;
inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK8_0 = 32;
inline constexpr int kQK4_NL = 32;
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

// 32 weights: w = q * d + m, q in [0, 15]; qs as in Q4_0.
struct BlockQ4_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qs[kQK4_1 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// 32 weights: w = (q - 16) * d, q in [0, 31]: the low 4 bits as in Q4_0, bit 4 of element j in
// bit j of qh (little-endian 32-bit word).
struct BlockQ5_0 {
  uint16_t d;  // fp16
  uint8_t qh[4];
  uint8_t qs[kQK5_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// 32 weights: w = q * d + m, q in [0, 31], bits as in Q5_0.
struct BlockQ5_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

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

// 256 weights in 16 sub-blocks of 16: w = d * (sc[j] & 15) * q - dmin * (sc[j] >> 4), q in
// [0, 3]. Byte l of qs[32 h ..] holds, in bit pairs 0..3, elements 128 h + 32 k + l (k = 0..3).
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;     // fp16
  uint16_t dmin;  // fp16
};
static_assert(sizeof(BlockQ2_K) == 84);

// 256 weights in 16 sub-blocks of 16: w = d * (sc[j] - 32) * (q - 4 * !high), q's low 2 bits
// laid out as Q2_K's, its high bit for element 32 k + l (k = 0..7) in bit k of hmask[l]; the 16
// six-bit scales packed into 12 bytes (low nibbles in bytes 0..7, top 2 bits in bytes 8..11).
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[kKScaleBytes];
  uint16_t d;  // fp16
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K with a fifth bit: element l of 64-group g adds 16 when bit 2g (low sub-block) or 2g+1
// (high sub-block) of qh[l] is set.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// 32 weights: w = d * kIq4nlValues[q], q in [0, 15] packed as Q4_0's.
struct BlockIQ4_NL {
  uint16_t d;  // fp16
  uint8_t qs[kQK4_NL / 2];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// 256 weights in 8 sub-blocks of 32: w = d * (ls[j] - 32) * kIq4nlValues[q], with six-bit ls
// (low 4 bits in nibble j % 2 of scales_l[j / 2], top 2 bits at bit 2j of scales_h); each
// sub-block's 16 bytes of qs as one IQ4_NL block's.
struct BlockIQ4_XS {
  uint16_t d;  // fp16
  uint16_t scales_h;
  uint8_t scales_l[kQK_K / 64];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// The 16 levels of IQ4_NL / IQ4_XS (non-uniform, denser near zero).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

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
// Every type a weight tensor may have (Q8_K is for activations only).
inline constexpr TensorType kWeightTensorTypes[] = {
    TensorType::kF32,    TensorType::kF16,  TensorType::kBF16,  TensorType::kQ4_0,
    TensorType::kQ4_1,   TensorType::kQ5_0, TensorType::kQ5_1,  TensorType::kQ8_0,
    TensorType::kIQ4_NL, TensorType::kQ2_K, TensorType::kQ3_K,  TensorType::kQ4_K,
    TensorType::kQ5_K,   TensorType::kQ6_K, TensorType::kIQ4_XS};
std::optional<TensorType> tensor_type_from_name(std::string_view name);
// "f32, f16, ..." for error messages.
std::string supported_weight_type_names();

// Bytes of a row of n elements; n must be a multiple of the block size.
size_t tensor_row_bytes(TensorType type, int64_t n);

// A CPU kernel table's repacked copy of a weight matrix (cpu_kernels.h, PackedKernel).
enum class PackedLayout : uint8_t {
  kNone,
  kRowGroup16,  // groups of 16 rows, quants interleaved 4 bytes per row (Q4_0, Q5_0, Q8_0,
                // IQ4_NL, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS)
};

}  // namespace infergrid
