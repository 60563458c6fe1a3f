#include "model/synth.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "core/thread_pool.h"
#include "kernels/quant.h"
#include "model/file_type.h"
#include "model/gguf_writer.h"
#include "model/synth_vocab.h"

namespace infergrid {

namespace {

struct Preset {
  const char* name;
  int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
};

constexpr Preset kPresets[] = {
    {"1m", 128, 4, 4, 2, 384, 1024},
    {"10m", 256, 8, 8, 4, 768, 4096},
    {"100m", 768, 12, 12, 4, 2048, 8192},
    {"1b", 2048, 16, 32, 8, 8192, 32000},
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t hash_name(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Fills one row with values uniform in [-scale, scale] (plus `offset`), from a stream keyed by
// (seed, tensor, row) so rows can be generated in any order on any thread.
void fill_row(uint64_t seed, uint64_t tensor_key, int64_t row, float scale, float offset,
              float* out, int64_t n) {
  uint64_t state = splitmix64(seed ^ splitmix64(tensor_key + static_cast<uint64_t>(row)));
  for (int64_t i = 0; i < n; ++i) {
    state = splitmix64(state);
    const float u = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = offset + scale * (2.0f * u - 1.0f);
  }
}

// Picks the requested type when the row length fits its block size, else a compatible one
// (llama.cpp's quantizer falls back the same way).
TensorType fit_type(TensorType wanted, int64_t n_cols) {
  for (TensorType t : {wanted, TensorType::kQ8_0, TensorType::kF16}) {
    if (n_cols % tensor_type_traits(t)->block_elems == 0) return t;
  }
  return TensorType::kF32;
}

class TensorBuilder {
 public:
  TensorBuilder(GgufWriter& writer, ThreadPool& pool, uint64_t seed)
      : writer_(writer), pool_(pool), seed_(seed) {}

  void matrix(const std::string& name, TensorType wanted, int64_t n_cols, int64_t n_rows,
              float scale) {
    const TensorType type = fit_type(wanted, n_cols);
    const size_t row_bytes = tensor_row_bytes(type, n_cols);
    std::vector<uint8_t> data(row_bytes * static_cast<size_t>(n_rows));
    const uint64_t key = hash_name(name);
    std::vector<std::vector<float>> rows(static_cast<size_t>(pool_.size()),
                                         std::vector<float>(static_cast<size_t>(n_cols)));
    pool_.parallel_for(n_rows, [&](int64_t r, int thread) {
      float* row = rows[static_cast<size_t>(thread)].data();
      fill_row(seed_, key, r, scale, 0.0f, row, n_cols);
      quantize_row(type, row, data.data() + static_cast<size_t>(r) * row_bytes, n_cols);
    });
    n_params_ += n_cols * n_rows;
    writer_.add_tensor(name, type, {n_cols, n_rows}, std::move(data));
  }

  // A 3-D expert tensor [n_cols, n_rows, n_expert]: the experts' matrices one after another.
  void experts(const std::string& name, TensorType wanted, int64_t n_cols, int64_t n_rows,
               int64_t n_expert, float scale) {
    const TensorType type = fit_type(wanted, n_cols);
    const size_t row_bytes = tensor_row_bytes(type, n_cols);
    const int64_t total_rows = n_rows * n_expert;
    std::vector<uint8_t> data(row_bytes * static_cast<size_t>(total_rows));
    const uint64_t key = hash_name(name);
    std::vector<std::vector<float>> rows(static_cast<size_t>(pool_.size()),
                                         std::vector<float>(static_cast<size_t>(n_cols)));
    pool_.parallel_for(total_rows, [&](int64_t r, int thread) {
      float* row = rows[static_cast<size_t>(thread)].data();
      fill_row(seed_, key, r, scale, 0.0f, row, n_cols);
      quantize_row(type, row, data.data() + static_cast<size_t>(r) * row_bytes, n_cols);
    });
    n_params_ += n_cols * total_rows;
    writer_.add_tensor(name, type, {n_cols, n_rows, n_expert}, std::move(data));
  }

  // An F32 matrix (kept unquantized, as llama.cpp keeps expert routers).
  void f32_matrix(const std::string& name, int64_t n_cols, int64_t n_rows, float scale) {
    std::vector<uint8_t> data(static_cast<size_t>(n_cols * n_rows) * sizeof(float));
    const uint64_t key = hash_name(name);
    for (int64_t r = 0; r < n_rows; ++r) {
      fill_row(seed_, key, r, scale, 0.0f, reinterpret_cast<float*>(data.data()) + r * n_cols,
               n_cols);
    }
    n_params_ += n_cols * n_rows;
    writer_.add_tensor(name, TensorType::kF32, {n_cols, n_rows}, std::move(data));
  }

  void vector(const std::string& name, int64_t n, float scale, float offset) {
    std::vector<float> values(static_cast<size_t>(n));
    fill_row(seed_, hash_name(name), 0, scale, offset, values.data(), n);
    std::vector<uint8_t> data(static_cast<size_t>(n) * sizeof(float));
    std::memcpy(data.data(), values.data(), data.size());
    n_params_ += n;
    writer_.add_tensor(name, TensorType::kF32, {n}, std::move(data));
  }

  int64_t n_params() const { return n_params_; }

 private:
  GgufWriter& writer_;
  ThreadPool& pool_;
  uint64_t seed_;
  int64_t n_params_ = 0;
};

}  // namespace

std::vector<std::string> synth_size_presets() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.emplace_back(p.name);
  return names;
}

Result<SynthSummary> synthesize_model(const SynthOptions& o, const std::string& path,
                                      int n_threads) {
  const Preset* preset = nullptr;
  for (const auto& p : kPresets) {
    if (o.size == p.name) preset = &p;
  }
  if (preset == nullptr) {
    return make_error(StatusCode::kInvalidArgument, "unknown size '{}' (choose 1m, 10m, 100m, 1b)",
                      o.size);
  }
  const std::map<std::string, std::string> kArchs = {
      {"llama", "llama"}, {"llama2", "llama"},  {"mistral", "llama"},    {"qwen2", "qwen2"},
      {"qwen3", "qwen3"}, {"mixtral", "llama"}, {"qwen3moe", "qwen3moe"}};
  auto arch_it = kArchs.find(o.arch);
  if (arch_it == kArchs.end()) {
    return make_error(StatusCode::kInvalidArgument,
                      "unknown architecture '{}' (choose llama, llama2, mistral, qwen2, qwen3, "
                      "mixtral, qwen3moe)",
                      o.arch);
  }
  const std::string gguf_arch = arch_it->second;
  const bool moe = o.arch == "mixtral" || o.arch == "qwen3moe";
  const bool qk_norm = o.arch == "qwen3" || o.arch == "qwen3moe";
  const bool qwen_vocab = o.arch == "qwen2" || qk_norm;
  const int n_embd = o.n_embd ? o.n_embd : preset->n_embd;
  const int n_layer = o.n_layer ? o.n_layer : preset->n_layer;
  const int n_head = o.n_head ? o.n_head : preset->n_head;
  const int n_head_kv =
      o.n_head_kv ? o.n_head_kv : (o.arch == "llama2" ? n_head : preset->n_head_kv);
  const int n_ff = o.n_ff ? o.n_ff : preset->n_ff;
  const int n_ctx = o.n_ctx ? o.n_ctx : 4096;
  if (n_embd % n_head != 0 || n_head % n_head_kv != 0 || (n_embd / n_head) % 2 != 0) {
    return make_error(StatusCode::kInvalidArgument,
                      "inconsistent dimensions: n_embd {} / n_head {} / n_head_kv {}", n_embd,
                      n_head, n_head_kv);
  }
  const int head_dim = n_embd / n_head;
  float rope_base = 500000.0f;
  if (o.arch == "llama2") rope_base = 10000.0f;
  if (o.arch != "llama" && o.arch != "llama2") rope_base = 1000000.0f;
  const int n_expert = moe ? (o.n_expert ? o.n_expert : 8) : 0;
  const int n_expert_used = moe ? (o.n_expert_used ? o.n_expert_used : 2) : 0;
  const int n_ff_expert = moe ? (o.n_ff_expert ? o.n_ff_expert : std::max(32, n_ff / 4)) : 0;
  if (moe && (n_expert < 2 || n_expert_used < 1 || n_expert_used > n_expert)) {
    return make_error(StatusCode::kInvalidArgument, "{} experts with {} used is not a mixture",
                      n_expert, n_expert_used);
  }

  IG_ASSIGN_OR_RETURN(SynthVocab vocab, make_synth_vocab(o.n_vocab ? o.n_vocab : preset->n_vocab,
                                                         qwen_vocab ? "qwen2" : "llama-bpe"));
  const int n_vocab = static_cast<int>(vocab.tokens.size());

  GgufWriter writer;
  writer.set_string("general.architecture", gguf_arch);
  writer.set_string("general.name", fmt::format("infergrid-synth-{}-{}-{}", o.arch, o.size,
                                                tensor_type_traits(o.type)->name));
  const std::optional<LlamaFileType> file_type = file_type_of(o.type);
  if (!file_type) {
    return make_error(StatusCode::kInvalidArgument, "{} is not a weight type",
                      tensor_type_traits(o.type)->name);
  }
  writer.set_u32("general.file_type", static_cast<uint32_t>(*file_type));
  const std::string a = gguf_arch + ".";
  writer.set_u32(a + "context_length", static_cast<uint32_t>(n_ctx));
  writer.set_u32(a + "embedding_length", static_cast<uint32_t>(n_embd));
  writer.set_u32(a + "block_count", static_cast<uint32_t>(n_layer));
  writer.set_u32(a + "feed_forward_length", static_cast<uint32_t>(n_ff));
  writer.set_u32(a + "attention.head_count", static_cast<uint32_t>(n_head));
  writer.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(n_head_kv));
  writer.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  writer.set_f32(a + "rope.freq_base", rope_base);
  writer.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(head_dim));
  writer.set_u32(a + "vocab_size", static_cast<uint32_t>(n_vocab));
  if (qk_norm) {
    writer.set_u32(a + "attention.key_length", static_cast<uint32_t>(head_dim));
    writer.set_u32(a + "attention.value_length", static_cast<uint32_t>(head_dim));
  }
  if (moe) {
    writer.set_u32(a + "expert_count", static_cast<uint32_t>(n_expert));
    writer.set_u32(a + "expert_used_count", static_cast<uint32_t>(n_expert_used));
    // Mixtral's experts are feed_forward_length wide; qwen3moe names their width apart.
    if (o.arch == "mixtral") {
      writer.set_u32(a + "feed_forward_length", static_cast<uint32_t>(n_ff_expert));
    } else {
      writer.set_u32(a + "expert_feed_forward_length", static_cast<uint32_t>(n_ff_expert));
    }
  }
  write_synth_vocab(writer, vocab);

  ThreadPool pool(n_threads);
  TensorBuilder b(writer, pool, o.seed);
  // Scales keep activations in a sane range for random weights: ~1/sqrt(fan_in).
  const float s_embd = 1.0f / std::sqrt(static_cast<float>(n_embd));
  const float s_ff = 1.0f / std::sqrt(static_cast<float>(n_ff));
  // Small embeddings let the layers, not the input token, dominate the residual stream, so
  // greedy decoding of a tied-output model does not just repeat its input.
  b.matrix("token_embd.weight", o.type, n_embd, n_vocab, s_embd);
  b.vector("output_norm.weight", n_embd, 0.1f, 1.0f);
  if (!o.tied_output) b.matrix("output.weight", o.type, n_embd, n_vocab, s_embd * 2.0f);
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    b.vector(p + "attn_norm.weight", n_embd, 0.1f, 1.0f);
    b.matrix(p + "attn_q.weight", o.type, n_embd, n_embd, s_embd * 1.7f);
    b.matrix(p + "attn_k.weight", o.type, n_embd, n_head_kv * head_dim, s_embd * 1.7f);
    b.matrix(p + "attn_v.weight", o.type, n_embd, n_head_kv * head_dim, s_embd * 1.7f);
    if (gguf_arch == "qwen2") {
      b.vector(p + "attn_q.bias", n_embd, 0.1f, 0.0f);
      b.vector(p + "attn_k.bias", n_head_kv * head_dim, 0.1f, 0.0f);
      b.vector(p + "attn_v.bias", n_head_kv * head_dim, 0.1f, 0.0f);
    }
    if (qk_norm) {
      b.vector(p + "attn_q_norm.weight", head_dim, 0.1f, 1.0f);
      b.vector(p + "attn_k_norm.weight", head_dim, 0.1f, 1.0f);
    }
    b.matrix(p + "attn_output.weight", o.type, n_embd, n_embd, s_embd * 1.7f);
    b.vector(p + "ffn_norm.weight", n_embd, 0.1f, 1.0f);
    if (moe) {
      const float s_ff_expert = 1.0f / std::sqrt(static_cast<float>(n_ff_expert));
      // A router with a wide spread of logits, so tokens do not all pick the same experts.
      b.f32_matrix(p + "ffn_gate_inp.weight", n_embd, n_expert, s_embd * 8.0f);
      b.experts(p + "ffn_gate_exps.weight", o.type, n_embd, n_ff_expert, n_expert, s_embd * 1.7f);
      b.experts(p + "ffn_up_exps.weight", o.type, n_embd, n_ff_expert, n_expert, s_embd * 1.7f);
      b.experts(p + "ffn_down_exps.weight", o.type, n_ff_expert, n_embd, n_expert,
                s_ff_expert * 1.7f);
    } else {
      b.matrix(p + "ffn_gate.weight", o.type, n_embd, n_ff, s_embd * 1.7f);
      b.matrix(p + "ffn_up.weight", o.type, n_embd, n_ff, s_embd * 1.7f);
      b.matrix(p + "ffn_down.weight", o.type, n_ff, n_embd, s_ff * 1.7f);
    }
  }

  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  IG_RETURN_IF_ERROR(writer.write_file(path));
  SynthSummary summary;
  summary.path = path;
  summary.n_params = b.n_params();
  summary.file_bytes = std::filesystem::file_size(path);
  summary.description = fmt::format(
      "{} ({}), {} layers, n_embd {}, heads {}/{}, {}, vocab {}, {}: {:.2f}M parameters, "
      "{:.1f} MiB",
      o.arch, gguf_arch, n_layer, n_embd, n_head, n_head_kv,
      moe ? fmt::format("{} experts ({} used) of n_ff {}", n_expert, n_expert_used, n_ff_expert)
          : fmt::format("n_ff {}", n_ff),
      n_vocab, tensor_type_traits(o.type)->name, summary.n_params / 1e6,
      summary.file_bytes / 1048576.0);
  return summary;
}

}  // namespace infergrid
