// `model quantize`: rewrites a GGUF model in another quantization, choosing each tensor's type
// the way llama-quantize does (without an importance matrix), so a Q4_K_M made here has the
// same per-tensor types and, through the reference quantizers, the same bytes as llama.cpp's.
//
// Rules kept from llama.cpp (llama_tensor_get_type): 1-D tensors, norms and expert routers stay
// as they are; the output matrix (or a tied token embedding) becomes Q6_K in K and legacy
// quants (Q8_0 stays Q8_0); the _S/_M/_L mixes give attn_v, ffn_down, attn_output and
// attn_qkv more bits in chosen layers (use_more_bits: the first and last eighth and every third
// layer between); 8-expert models keep attn_k/attn_v at Q8_0; a tensor whose rows do not fit
// the chosen block size falls back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS
// -> IQ4_NL, then F16). Tensors are visited in llama.cpp's order (by layer, then name), which
// its per-layer counters depend on.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/tensor_type.h"
#include "model/file_type.h"

namespace infergrid {

// "Q4_K_M", "q4_k_m", "Q4_K" (llama-quantize's alias of Q4_K_M; Q3_K and Q5_K likewise to _M),
// "F16", "BF16", "F32", "Q8_0", "IQ4_XS", ...
Result<LlamaFileType> parse_quantize_target(std::string_view name);
// The names parse_quantize_target accepts, for help and error messages.
std::string quantize_target_names();

struct QuantizeOptions {
  LlamaFileType target = LlamaFileType::kQ4_K_M;
  bool allow_requantize = false;  // quantized inputs are dequantized first (loses accuracy)
  int n_threads = 0;
};

struct QuantizeSummary {
  std::map<std::string, int> tensors_by_type;  // output tensor types
  int n_fallback = 0;                          // tensors whose rows forced another type
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
};

Result<QuantizeSummary> quantize_model(const std::string& input_path,
                                       const std::string& output_path,
                                       const QuantizeOptions& options);

}  // namespace infergrid
