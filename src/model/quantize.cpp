#include "model/quantize.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>

#include "core/thread_pool.h"
#include "kernels/quant.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"

namespace infergrid {

namespace {

struct TargetName {
  const char* name;
  LlamaFileType type;
};

constexpr TargetName kTargets[] = {
    {"F32", LlamaFileType::kAllF32},
    {"F16", LlamaFileType::kF16},
    {"BF16", LlamaFileType::kBF16},
    {"Q4_0", LlamaFileType::kQ4_0},
    {"Q4_1", LlamaFileType::kQ4_1},
    {"Q5_0", LlamaFileType::kQ5_0},
    {"Q5_1", LlamaFileType::kQ5_1},
    {"Q8_0", LlamaFileType::kQ8_0},
    {"Q2_K", LlamaFileType::kQ2_K},
    {"Q3_K_S", LlamaFileType::kQ3_K_S},
    {"Q3_K_M", LlamaFileType::kQ3_K_M},
    {"Q3_K_L", LlamaFileType::kQ3_K_L},
    {"Q4_K_S", LlamaFileType::kQ4_K_S},
    {"Q4_K_M", LlamaFileType::kQ4_K_M},
    {"Q5_K_S", LlamaFileType::kQ5_K_S},
    {"Q5_K_M", LlamaFileType::kQ5_K_M},
    {"Q6_K", LlamaFileType::kQ6_K},
    {"IQ4_NL", LlamaFileType::kIQ4_NL},
    {"IQ4_XS", LlamaFileType::kIQ4_XS},
    // llama-quantize's aliases.
    {"Q3_K", LlamaFileType::kQ3_K_M},
    {"Q4_K", LlamaFileType::kQ4_K_M},
    {"Q5_K", LlamaFileType::kQ5_K_M},
};

// The type most tensors of a file of `target` get (llama.cpp's default_type).
TensorType default_type(LlamaFileType target) {
  switch (target) {
    case LlamaFileType::kAllF32:
      return TensorType::kF32;
    case LlamaFileType::kF16:
      return TensorType::kF16;
    case LlamaFileType::kBF16:
      return TensorType::kBF16;
    case LlamaFileType::kQ4_0:
      return TensorType::kQ4_0;
    case LlamaFileType::kQ4_1:
      return TensorType::kQ4_1;
    case LlamaFileType::kQ5_0:
      return TensorType::kQ5_0;
    case LlamaFileType::kQ5_1:
      return TensorType::kQ5_1;
    case LlamaFileType::kQ8_0:
      return TensorType::kQ8_0;
    case LlamaFileType::kQ2_K:
      return TensorType::kQ2_K;
    case LlamaFileType::kQ3_K_S:
    case LlamaFileType::kQ3_K_M:
    case LlamaFileType::kQ3_K_L:
      return TensorType::kQ3_K;
    case LlamaFileType::kQ4_K_S:
    case LlamaFileType::kQ4_K_M:
      return TensorType::kQ4_K;
    case LlamaFileType::kQ5_K_S:
    case LlamaFileType::kQ5_K_M:
      return TensorType::kQ5_K;
    case LlamaFileType::kQ6_K:
      return TensorType::kQ6_K;
    case LlamaFileType::kIQ4_NL:
      return TensorType::kIQ4_NL;
    case LlamaFileType::kIQ4_XS:
      return TensorType::kIQ4_XS;
  }
  return TensorType::kF32;
}

bool is_quantized(TensorType t) {
  return t != TensorType::kF32 && t != TensorType::kF16 && t != TensorType::kBF16;
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// -1 for tensors outside the blocks.
int layer_of(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

// What llama_tensor_get_type needs to know about the model, and its running counters.
struct MixState {
  LlamaFileType ftype;
  int n_layer = 0;
  int n_gqa = 1;
  int n_expert = 0;
  bool is_70b = false;
  bool has_output = false;
  int n_attention_wv = 0;
  int i_attention_wv = 0;
  int i_ffn_down = 0;
  int n_fallback = 0;
};

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

Result<TensorType> mixed_type(MixState& q, const std::string& name, int64_t n_cols,
                              TensorType type) {
  using F = LlamaFileType;
  const F f = q.ftype;
  auto block = [](TensorType t) { return tensor_type_traits(t)->block_elems; };
  if (name == "output.weight" || (!q.has_output && name == "token_embd.weight")) {
    if (n_cols % block(type) != 0) {
      type = TensorType::kQ8_0;
    } else if (type != TensorType::kQ8_0) {
      type = TensorType::kQ6_K;
    }
  } else if (name == "token_embd.weight") {
    // Unchanged for every type here (llama.cpp lowers it only for IQ1/IQ2/IQ3/TQ files).
  } else if (contains(name, "attn_v.weight")) {
    if (f == F::kQ2_K) {
      type = q.n_gqa >= 4 ? TensorType::kQ4_K : TensorType::kQ3_K;
    } else if (f == F::kQ3_K_M) {
      type = q.i_attention_wv < 2 ? TensorType::kQ5_K : TensorType::kQ4_K;
    } else if (f == F::kQ3_K_L) {
      type = TensorType::kQ5_K;
    } else if ((f == F::kIQ4_NL || f == F::kIQ4_XS) && q.n_gqa >= 4) {
      type = TensorType::kQ5_K;
    } else if ((f == F::kQ4_K_M || f == F::kQ5_K_M) &&
               use_more_bits(q.i_attention_wv, q.n_attention_wv)) {
      type = TensorType::kQ6_K;
    } else if (f == F::kQ4_K_S && q.i_attention_wv < 4) {
      type = TensorType::kQ5_K;
    }
    if (q.is_70b && (type == TensorType::kQ3_K || type == TensorType::kQ4_K)) {
      type = TensorType::kQ5_K;
    }
    if (q.n_expert == 8) type = TensorType::kQ8_0;
    ++q.i_attention_wv;
  } else if (contains(name, "attn_k.weight")) {
    if (q.n_expert == 8) type = TensorType::kQ8_0;
  } else if (contains(name, "ffn_down")) {
    // Mixtral's experts are not in layer order, so MoE files take the layer from the name.
    const int i_layer = q.n_expert > 1 ? layer_of(name) : q.i_ffn_down;
    const int n_layer = q.n_layer;
    if (i_layer < 0 || i_layer >= n_layer) {
      return make_error(StatusCode::kCorrupt, "bad layer {} for tensor '{}'", i_layer, name);
    }
    if (f == F::kQ2_K) {
      type = TensorType::kQ3_K;
    } else if (f == F::kQ3_K_M) {
      type = i_layer < n_layer / 16 ? TensorType::kQ5_K : TensorType::kQ4_K;
    } else if (f == F::kQ3_K_L) {
      type = TensorType::kQ5_K;
    } else if (f == F::kQ4_K_M) {
      if (use_more_bits(i_layer, n_layer)) type = TensorType::kQ6_K;
    } else if (i_layer < n_layer / 8 && (f == F::kIQ4_NL || f == F::kIQ4_XS)) {
      type = TensorType::kQ5_K;
    } else if (f == F::kQ5_K_M && use_more_bits(i_layer, n_layer)) {
      type = TensorType::kQ6_K;
    } else if (f == F::kQ4_K_S && i_layer < n_layer / 8) {
      type = TensorType::kQ5_K;
    }
    ++q.i_ffn_down;
  } else if (contains(name, "attn_output.weight")) {
    if (q.n_expert == 8) {
      if (f == F::kQ2_K || f == F::kQ3_K_S || f == F::kQ3_K_M || f == F::kIQ4_NL ||
          f == F::kQ4_K_S || f == F::kQ4_K_M || f == F::kIQ4_XS) {
        type = TensorType::kQ5_K;
      }
    } else if (f == F::kQ2_K) {
      type = TensorType::kQ3_K;
    } else if (f == F::kQ3_K_M) {
      type = TensorType::kQ4_K;
    } else if (f == F::kQ3_K_L) {
      type = TensorType::kQ5_K;
    }
  } else if (contains(name, "attn_qkv.weight")) {
    if (f == F::kQ3_K_M || f == F::kQ3_K_L) {
      type = TensorType::kQ4_K;
    } else if (f == F::kQ4_K_M) {
      type = TensorType::kQ5_K;
    } else if (f == F::kQ5_K_M) {
      type = TensorType::kQ6_K;
    }
  }
  if (n_cols % block(type) != 0) {
    switch (type) {
      case TensorType::kQ2_K:
      case TensorType::kQ3_K:
      case TensorType::kIQ4_XS:
        type = TensorType::kIQ4_NL;
        break;
      case TensorType::kQ4_K:
        type = TensorType::kQ5_0;
        break;
      case TensorType::kQ5_K:
        type = TensorType::kQ5_1;
        break;
      case TensorType::kQ6_K:
        type = TensorType::kQ8_0;
        break;
      default:
        return make_error(StatusCode::kInvalidArgument,
                          "tensor '{}' has rows of {} elements, not a multiple of {}'s block of "
                          "{}",
                          name, n_cols, tensor_type_traits(type)->name, block(type));
    }
    if (n_cols % block(type) != 0) type = TensorType::kF16;
    ++q.n_fallback;
  }
  return type;
}

// Whether llama-quantize would quantize this tensor at all.
bool quantizable(const GgufTensorInfo& t) {
  const std::string& name = t.name;
  return name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0 &&
         t.dims.size() >= 2 && !contains(name, "_norm.weight") &&
         !contains(name, "ffn_gate_inp.weight");
}

}  // namespace

Result<LlamaFileType> parse_quantize_target(std::string_view name) {
  std::string upper(name);
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  for (const TargetName& t : kTargets) {
    if (upper == t.name) return t.type;
  }
  return make_error(StatusCode::kInvalidArgument, "unknown quantization type '{}' (choose {})",
                    name, quantize_target_names());
}

std::string quantize_target_names() {
  std::string names;
  for (const TargetName& t : kTargets) names += (names.empty() ? "" : ", ") + std::string(t.name);
  return names;
}

Result<QuantizeSummary> quantize_model(const std::string& input_path,
                                       const std::string& output_path,
                                       const QuantizeOptions& options) {
  IG_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> in, GgufFile::open(input_path));
  IG_ASSIGN_OR_RETURN(std::optional<std::string_view> arch, in->get_string("general.architecture"));
  if (!arch) return Status(StatusCode::kCorrupt, "missing general.architecture");
  const std::string p = std::string(*arch) + ".";
  MixState q;
  q.ftype = options.target;
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> n_layer, in->get_int(p + "block_count"));
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> n_head, in->get_int(p + "attention.head_count"));
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> n_head_kv, in->get_int(p + "attention.head_count_kv"));
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> n_expert, in->get_int(p + "expert_count"));
  if (!n_layer || *n_layer <= 0) {
    return make_error(StatusCode::kCorrupt, "missing or bad {}block_count", p);
  }
  q.n_layer = static_cast<int>(*n_layer);
  if (n_head && n_head_kv && *n_head_kv > 0) q.n_gqa = static_cast<int>(*n_head / *n_head_kv);
  q.n_expert = n_expert ? static_cast<int>(*n_expert) : 0;
  q.is_70b = *arch == "llama" && q.n_layer == 80;

  // llama.cpp's tensor order: by layer (tensors outside the blocks first), then by name.
  std::vector<const GgufTensorInfo*> tensors;
  for (const GgufTensorInfo& t : in->tensors()) {
    tensors.push_back(&t);
    if (contains(t.name, "attn_v.weight") || contains(t.name, "attn_qkv.weight") ||
        contains(t.name, "attn_kv_b.weight")) {
      ++q.n_attention_wv;
    } else if (t.name == "output.weight") {
      q.has_output = true;
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(), [](const auto* a, const auto* b) {
    const int la = layer_of(a->name), lb = layer_of(b->name);
    return la != lb ? la < lb : a->name < b->name;
  });

  GgufWriter out(in->alignment());
  for (const auto& [key, value] : in->metadata()) {
    if (key == "general.alignment") continue;  // the writer sets its own
    out.set_value(key, value);
  }
  out.set_u32("general.quantization_version", 2);
  out.set_u32("general.file_type", static_cast<uint32_t>(options.target));

  QuantizeSummary summary;
  ThreadPool pool(options.n_threads);
  const TensorType base = default_type(options.target);
  for (const GgufTensorInfo* t : tensors) {
    summary.input_bytes += t->n_bytes;
    if (!is_supported_tensor_type(t->raw_type)) {
      return make_error(StatusCode::kUnsupported, "tensor '{}' has type {}, which is not supported",
                        t->name, tensor_type_name(t->raw_type));
    }
    TensorType type = t->type;
    if (quantizable(*t)) {
      type = base;
      if (is_quantized(base)) {
        IG_ASSIGN_OR_RETURN(type, mixed_type(q, t->name, t->dims[0], base));
      }
    }
    const int64_t n_cols = t->dims[0];
    const int64_t n_rows = t->n_rows();
    if (type == t->type) {
      out.add_tensor(t->name, type, t->dims, std::vector<uint8_t>(t->data, t->data + t->n_bytes));
    } else {
      if (is_quantized(t->type) && !options.allow_requantize) {
        return make_error(StatusCode::kInvalidArgument,
                          "tensor '{}' is already {}: requantizing loses accuracy "
                          "(--allow-requantize to do it anyway)",
                          t->name, tensor_type_name(t->raw_type));
      }
      const size_t in_row = tensor_row_bytes(t->type, n_cols);
      const size_t out_row = tensor_row_bytes(type, n_cols);
      std::vector<uint8_t> data(out_row * static_cast<size_t>(n_rows));
      std::vector<std::vector<float>> rows(static_cast<size_t>(pool.size()),
                                           std::vector<float>(static_cast<size_t>(n_cols)));
      pool.parallel_for(n_rows, [&](int64_t r, int thread) {
        float* row = rows[static_cast<size_t>(thread)].data();
        dequantize_row(t->type, t->data + static_cast<size_t>(r) * in_row, row, n_cols);
        quantize_row(type, row, data.data() + static_cast<size_t>(r) * out_row, n_cols);
      });
      out.add_tensor(t->name, type, t->dims, std::move(data));
    }
    ++summary.tensors_by_type[tensor_type_name(static_cast<uint32_t>(type))];
    summary.output_bytes += tensor_row_bytes(type, n_cols) * static_cast<size_t>(n_rows);
  }
  summary.n_fallback = q.n_fallback;
  const std::filesystem::path parent = std::filesystem::path(output_path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  IG_RETURN_IF_ERROR(out.write_file(output_path));
  return summary;
}

}  // namespace infergrid
