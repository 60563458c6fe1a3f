#include "model/naive_model.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>

#include "kernels/quant.h"
#include "model/gguf.h"

namespace infergrid {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("NaiveModel " + path + ": " + what);
}

template <typename T>
std::optional<T> unwrap(Result<std::optional<T>> r, const std::string& path,
                        const std::string& key) {
  if (!r.is_ok()) fail(path, key + ": " + r.status().to_string());
  return r.value();
}

std::optional<int64_t> meta_int(const GgufFile& f, const std::string& key) {
  return unwrap(f.get_int(key), f.path(), key);
}

std::optional<double> meta_float(const GgufFile& f, const std::string& key) {
  return unwrap(f.get_float(key), f.path(), key);
}

std::optional<std::string> meta_string(const GgufFile& f, const std::string& key) {
  auto v = unwrap(f.get_string(key), f.path(), key);
  if (!v) return std::nullopt;
  return std::string(*v);
}

int64_t require_int(const GgufFile& f, const std::string& key) {
  auto v = meta_int(f, key);
  if (!v) fail(f.path(), "missing metadata " + key);
  return *v;
}

// Dequantizes a whole tensor to float, row by row, checking its shape against `dims`
// (ggml order: dims[0] contiguous).
std::vector<float> dequantize_tensor(const GgufFile& f, const std::string& name,
                                     const std::vector<int64_t>& dims) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (t == nullptr) fail(f.path(), "missing tensor " + name);
  std::vector<int64_t> actual = t->dims;
  while (actual.size() > dims.size() && actual.back() == 1) actual.pop_back();
  if (actual != dims) fail(f.path(), "tensor " + name + " has an unexpected shape");
  if (!is_supported_tensor_type(t->raw_type)) {
    fail(f.path(), "tensor " + name + " has unsupported type " + tensor_type_name(t->raw_type));
  }
  const int64_t row_elems = dims[0];
  const int64_t n_rows = t->n_rows();
  const size_t row_bytes = tensor_row_bytes(t->type, row_elems);
  if (row_bytes * static_cast<size_t>(n_rows) > t->n_bytes) {
    fail(f.path(), "tensor " + name + " is smaller than its shape");
  }
  std::vector<float> out(static_cast<size_t>(row_elems * n_rows));
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(t->type, t->data + r * row_bytes, out.data() + r * row_elems, row_elems);
  }
  return out;
}

// Applies the rotation of one pair (a, b) by angle theta, scaled by mscale.
void rotate(float& a, float& b, double theta, double mscale) {
  const double c = std::cos(theta) * mscale;
  const double s = std::sin(theta) * mscale;
  const double x0 = a;
  const double x1 = b;
  a = static_cast<float>(x0 * c - x1 * s);
  b = static_cast<float>(x0 * s + x1 * c);
}

// The type llama.cpp's CPU backend converts activations to before a dot product with a weight
// of type `weight` (ggml's vec_dot_type).
TensorType llama_cpp_vec_dot_type(TensorType weight) {
  switch (weight) {
    case TensorType::kF16:
      return TensorType::kF16;
    case TensorType::kBF16:
      return TensorType::kBF16;
    case TensorType::kQ4_0:
    case TensorType::kQ8_0:
    case TensorType::kQ5_0:
    case TensorType::kIQ4_NL:
      return TensorType::kQ8_0;
    // ggml's Q8_1 holds the same codes and scale as Q8_0 (plus their sum).
    case TensorType::kQ4_1:
    case TensorType::kQ5_1:
      return TensorType::kQ8_0;
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
    case TensorType::kIQ4_XS:
    case TensorType::kQ8_K:
      return TensorType::kQ8_K;
    case TensorType::kF32:
      break;
  }
  return TensorType::kF32;
}

}  // namespace

std::unique_ptr<NaiveModel> NaiveModel::load(const std::string& path, const Options& options) {
  auto opened = GgufFile::open(path);
  if (!opened.is_ok()) fail(path, opened.status().to_string());
  const GgufFile& f = *opened.value();

  std::unique_ptr<NaiveModel> m(new NaiveModel());
  Config& c = m->config_;
  m->options_ = options;
  auto arch = meta_string(f, "general.architecture");
  if (!arch) fail(path, "missing general.architecture");
  c.arch = *arch;
  const std::set<std::string> known = {"llama", "mistral",  "qwen2",   "qwen3",
                                       "phi3",  "qwen2moe", "qwen3moe"};
  if (!known.count(c.arch)) fail(path, "unsupported architecture " + c.arch);
  const std::string a = c.arch + ".";
  c.n_embd = static_cast<int>(require_int(f, a + "embedding_length"));
  c.n_layer = static_cast<int>(require_int(f, a + "block_count"));
  c.n_ff = static_cast<int>(require_int(f, a + "feed_forward_length"));
  c.n_head = static_cast<int>(require_int(f, a + "attention.head_count"));
  c.n_head_kv = static_cast<int>(meta_int(f, a + "attention.head_count_kv").value_or(c.n_head));
  c.head_dim = static_cast<int>(
      meta_int(f, a + "attention.key_length").value_or(c.n_embd / std::max(c.n_head, 1)));
  c.n_rot = static_cast<int>(meta_int(f, a + "rope.dimension_count").value_or(c.head_dim));
  c.rms_eps = meta_float(f, a + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_base = meta_float(f, a + "rope.freq_base").value_or(10000.0);
  c.rope_neox = c.arch != "llama" && c.arch != "mistral";
  c.qk_norm = c.arch == "qwen3" || c.arch == "qwen3moe";
  if (c.arch == "phi3") {
    c.sliding_window = static_cast<int>(meta_int(f, a + "attention.sliding_window").value_or(0));
  }
  c.n_expert = static_cast<int>(meta_int(f, a + "expert_count").value_or(0));
  if (c.n_expert > 0) {
    c.n_expert_used = static_cast<int>(require_int(f, a + "expert_used_count"));
    c.n_ff_expert =
        static_cast<int>(meta_int(f, a + "expert_feed_forward_length").value_or(c.n_ff));
    c.n_ff_shared =
        static_cast<int>(meta_int(f, a + "expert_shared_feed_forward_length").value_or(0));
    c.expert_norm = c.arch != "qwen2moe";
  }
  if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0 || c.head_dim <= 0 ||
      c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2 != 0) {
    fail(path, "inconsistent attention hyperparameters");
  }

  const auto scaling_type = meta_string(f, a + "rope.scaling.type");
  const auto scaling_factor = meta_float(f, a + "rope.scaling.factor");
  const auto scale_linear = meta_float(f, a + "rope.scale_linear");  // older GGUF files
  if (scaling_type && *scaling_type != "none") {
    if (*scaling_type != "linear" && *scaling_type != "yarn") {
      fail(path, "unsupported rope scaling " + *scaling_type);
    }
    c.rope_scaling = *scaling_type;
    c.rope_scaling_factor = scaling_factor.value_or(1.0);
  } else if (!scaling_type && scale_linear && *scale_linear != 1.0) {
    c.rope_scaling = "linear";
    c.rope_scaling_factor = *scale_linear;
  }
  if (c.rope_scaling_factor <= 0) fail(path, "rope scaling factor must be positive");
  c.rope_orig_ctx =
      static_cast<int>(meta_int(f, a + "rope.scaling.original_context_length")
                           .value_or(meta_int(f, a + "context_length").value_or(4096)));
  c.rope_attn_factor = meta_float(f, a + "rope.scaling.attn_factor").value_or(1.0);

  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr || embd->dims.size() < 2) fail(path, "missing tensor token_embd.weight");
  c.n_vocab = static_cast<int>(embd->dims[1]);

  const int64_t e = c.n_embd;
  const int64_t q_dim = static_cast<int64_t>(c.n_head) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    Matrix mat;
    mat.rows = static_cast<int>(rows);
    mat.cols = static_cast<int>(cols);
    mat.stored_type = f.find_tensor(name) != nullptr ? f.find_tensor(name)->type : TensorType::kF32;
    mat.data = dequantize_tensor(f, name, {cols, rows});
    return mat;
  };
  auto vec = [&](const std::string& name, int64_t n) { return dequantize_tensor(f, name, {n}); };
  // The experts of a 3-D tensor [cols, rows, n_expert] stacked as one matrix of
  // n_expert * rows rows.
  auto expert_stack = [&](const std::string& name, int64_t rows, int64_t cols) {
    Matrix mat;
    mat.rows = static_cast<int>(rows * c.n_expert);
    mat.cols = static_cast<int>(cols);
    mat.stored_type = f.find_tensor(name) != nullptr ? f.find_tensor(name)->type : TensorType::kF32;
    mat.data = dequantize_tensor(f, name, {cols, rows, c.n_expert});
    return mat;
  };
  auto row_range = [](const Matrix& m, int64_t first, int64_t rows) {
    Matrix part;
    part.rows = static_cast<int>(rows);
    part.cols = m.cols;
    part.stored_type = m.stored_type;
    part.data.assign(m.data.begin() + first * m.cols, m.data.begin() + (first + rows) * m.cols);
    return part;
  };

  m->token_embd_ = matrix("token_embd.weight", c.n_vocab, e);
  m->output_norm_ = vec("output_norm.weight", e);
  m->output_ = f.find_tensor("output.weight") != nullptr ? matrix("output.weight", c.n_vocab, e)
                                                         : m->token_embd_;
  if (f.find_tensor("rope_freqs.weight") != nullptr) {
    m->rope_freqs_ = vec("rope_freqs.weight", c.n_rot / 2);
  }
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer layer;
    layer.attn_norm = vec(p + "attn_norm.weight", e);
    if (c.arch == "phi3") {
      const Matrix qkv = matrix(p + "attn_qkv.weight", q_dim + 2 * kv_dim, e);
      layer.wq = row_range(qkv, 0, q_dim);
      layer.wk = row_range(qkv, q_dim, kv_dim);
      layer.wv = row_range(qkv, q_dim + kv_dim, kv_dim);
    } else {
      layer.wq = matrix(p + "attn_q.weight", q_dim, e);
      layer.wk = matrix(p + "attn_k.weight", kv_dim, e);
      layer.wv = matrix(p + "attn_v.weight", kv_dim, e);
    }
    layer.wo = matrix(p + "attn_output.weight", e, q_dim);
    layer.ffn_norm = vec(p + "ffn_norm.weight", e);
    if (c.qk_norm) {
      layer.q_norm = vec(p + "attn_q_norm.weight", c.head_dim);
      layer.k_norm = vec(p + "attn_k_norm.weight", c.head_dim);
    }
    if (c.n_expert > 0) {
      layer.router = matrix(p + "ffn_gate_inp.weight", c.n_expert, e);
      const Matrix gate = expert_stack(p + "ffn_gate_exps.weight", c.n_ff_expert, e);
      const Matrix up = expert_stack(p + "ffn_up_exps.weight", c.n_ff_expert, e);
      const Matrix down = expert_stack(p + "ffn_down_exps.weight", e, c.n_ff_expert);
      for (int x = 0; x < c.n_expert; ++x) {
        layer.experts.push_back({row_range(gate, x * c.n_ff_expert, c.n_ff_expert),
                                 row_range(up, x * c.n_ff_expert, c.n_ff_expert),
                                 row_range(down, x * e, e)});
      }
      if (c.n_ff_shared > 0) {
        layer.shared = {matrix(p + "ffn_gate_shexp.weight", c.n_ff_shared, e),
                        matrix(p + "ffn_up_shexp.weight", c.n_ff_shared, e),
                        matrix(p + "ffn_down_shexp.weight", e, c.n_ff_shared)};
        layer.shared_gate = vec(p + "ffn_gate_inp_shexp.weight", e);
      }
    } else if (c.arch == "phi3") {
      const Matrix gate_up = matrix(p + "ffn_up.weight", 2 * c.n_ff, e);
      layer.w_gate = row_range(gate_up, 0, c.n_ff);
      layer.w_up = row_range(gate_up, c.n_ff, c.n_ff);
      layer.w_down = matrix(p + "ffn_down.weight", e, c.n_ff);
    } else {
      layer.w_gate = matrix(p + "ffn_gate.weight", c.n_ff, e);
      layer.w_up = matrix(p + "ffn_up.weight", c.n_ff, e);
      layer.w_down = matrix(p + "ffn_down.weight", e, c.n_ff);
    }
    if (f.find_tensor(p + "attn_q.bias") != nullptr) layer.bq = vec(p + "attn_q.bias", q_dim);
    if (f.find_tensor(p + "attn_k.bias") != nullptr) layer.bk = vec(p + "attn_k.bias", kv_dim);
    if (f.find_tensor(p + "attn_v.bias") != nullptr) layer.bv = vec(p + "attn_v.bias", kv_dim);
    m->layers_.push_back(std::move(layer));
  }
  return m;
}

std::vector<float> NaiveModel::round_through(TensorType type, const std::vector<float>& x) {
  if (type == TensorType::kF32) return x;
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> packed(tensor_row_bytes(type, n));
  std::vector<float> out(x.size());
  quantize_row(type, x.data(), packed.data(), n);
  dequantize_row(type, packed.data(), out.data(), n);
  return out;
}

std::vector<float> NaiveModel::matvec(const Matrix& m, const std::vector<float>& input) const {
  const std::vector<float> x = options_.llama_cpp_activations
                                   ? round_through(llama_cpp_vec_dot_type(m.stored_type), input)
                                   : input;
  std::vector<float> out(m.rows);
  for (int r = 0; r < m.rows; ++r) {
    const float* row = m.data.data() + static_cast<size_t>(r) * m.cols;
    double sum = 0;
    for (int col = 0; col < m.cols; ++col) sum += static_cast<double>(row[col]) * x[col];
    out[r] = static_cast<float>(sum);
  }
  return out;
}

std::vector<float> NaiveModel::swiglu_ffn(const Matrix& gate_m, const Matrix& up_m,
                                          const Matrix& down_m, const std::vector<float>& h) const {
  const std::vector<float> gate = matvec(gate_m, h);
  const std::vector<float> up = matvec(up_m, h);
  std::vector<float> act(gate.size());
  for (size_t i = 0; i < act.size(); ++i) {
    const double g = gate[i];
    act[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
  return matvec(down_m, act);
}

std::vector<float> NaiveModel::rms_norm(const std::vector<float>& x,
                                        const std::vector<float>& w) const {
  double sum_sq = 0;
  for (float v : x) sum_sq += static_cast<double>(v) * v;
  const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(x.size()) + config_.rms_eps);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(x[i] * scale * w[i]);
  return out;
}

// Follows ggml's rope with YaRN: pair p (of n_rot / 2) turns by
// theta_extrap = pos * base^(-2p / n_rot) / rope_freqs[p]; linear scaling interpolates it by
// freq_scale = 1 / factor; YaRN blends interpolation and extrapolation with a ramp over the
// correction dimensions and scales magnitudes by 1 + 0.1 ln(factor).
void NaiveModel::rope(float* head, int pos) const {
  const Config& c = config_;
  const int n_pairs = c.n_rot / 2;
  const double freq_scale = c.rope_scaling == "none" ? 1.0 : 1.0 / c.rope_scaling_factor;
  const bool yarn = c.rope_scaling == "yarn";
  double mscale = c.rope_attn_factor;
  double corr_low = 0;
  double corr_high = 0;
  if (yarn) {
    mscale *= 1.0 + 0.1 * std::log(1.0 / freq_scale);
    auto corr_dim = [&](double n_rot_turns) {
      return c.n_rot * std::log(c.rope_orig_ctx / (n_rot_turns * 2 * std::numbers::pi)) /
             (2 * std::log(c.rope_base));
    };
    const double beta_fast = 32.0;
    const double beta_slow = 1.0;
    corr_low = std::max(0.0, std::floor(corr_dim(beta_fast)));
    corr_high = std::min(static_cast<double>(c.n_rot - 1), std::ceil(corr_dim(beta_slow)));
  }
  for (int p = 0; p < n_pairs; ++p) {
    double theta_extrap = pos * std::pow(c.rope_base, -2.0 * p / c.n_rot);
    if (!rope_freqs_.empty()) theta_extrap /= rope_freqs_[p];
    double theta = theta_extrap * freq_scale;
    if (yarn) {
      const double y = (p - corr_low) / std::max(0.001, corr_high - corr_low);
      const double ramp_mix = 1.0 - std::min(1.0, std::max(0.0, y));
      theta = theta * (1 - ramp_mix) + theta_extrap * ramp_mix;
    }
    if (c.rope_neox) {
      rotate(head[p], head[p + n_pairs], theta, yarn ? mscale : 1.0);
    } else {
      rotate(head[2 * p], head[2 * p + 1], theta, yarn ? mscale : 1.0);
    }
  }
}

std::vector<std::vector<float>> NaiveModel::logits_all(const std::vector<int32_t>& tokens) const {
  const Config& c = config_;
  const int n_tokens = static_cast<int>(tokens.size());
  const int hd = c.head_dim;
  const int group = c.n_head / c.n_head_kv;
  const double kq_scale = 1.0 / std::sqrt(static_cast<double>(hd));

  // x[t]: the residual stream at position t.
  std::vector<std::vector<float>> x(n_tokens);
  for (int t = 0; t < n_tokens; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab) {
      throw std::out_of_range("NaiveModel: token id " + std::to_string(tokens[t]) +
                              " outside the vocabulary");
    }
    const float* row = token_embd_.data.data() + static_cast<size_t>(tokens[t]) * c.n_embd;
    x[t].assign(row, row + c.n_embd);
  }

  for (const Layer& layer : layers_) {
    // Attention: project every position, rotate q and k, then attend causally.
    std::vector<std::vector<float>> q(n_tokens), k(n_tokens), v(n_tokens);
    for (int t = 0; t < n_tokens; ++t) {
      const std::vector<float> h = rms_norm(x[t], layer.attn_norm);
      q[t] = matvec(layer.wq, h);
      k[t] = matvec(layer.wk, h);
      v[t] = matvec(layer.wv, h);
      for (size_t i = 0; i < layer.bq.size(); ++i) q[t][i] += layer.bq[i];
      for (size_t i = 0; i < layer.bk.size(); ++i) k[t][i] += layer.bk[i];
      for (size_t i = 0; i < layer.bv.size(); ++i) v[t][i] += layer.bv[i];
      if (c.qk_norm) {
        auto norm_heads = [&](std::vector<float>& rows, int n_heads, const std::vector<float>& w) {
          for (int h_i = 0; h_i < n_heads; ++h_i) {
            const std::vector<float> head(rows.begin() + h_i * hd, rows.begin() + (h_i + 1) * hd);
            const std::vector<float> normed = rms_norm(head, w);
            std::copy(normed.begin(), normed.end(), rows.begin() + h_i * hd);
          }
        };
        norm_heads(q[t], c.n_head, layer.q_norm);
        norm_heads(k[t], c.n_head_kv, layer.k_norm);
      }
      for (int h_i = 0; h_i < c.n_head; ++h_i) rope(q[t].data() + h_i * hd, t);
      for (int h_i = 0; h_i < c.n_head_kv; ++h_i) rope(k[t].data() + h_i * hd, t);
      if (options_.f16_kv_cache) {
        q[t] = round_through(TensorType::kF16, q[t]);
        k[t] = round_through(TensorType::kF16, k[t]);
        v[t] = round_through(TensorType::kF16, v[t]);
      }
    }
    for (int t = 0; t < n_tokens; ++t) {
      std::vector<float> attn(static_cast<size_t>(c.n_head) * hd);
      for (int h_i = 0; h_i < c.n_head; ++h_i) {
        const int kv_h = h_i / group;
        const float* qh = q[t].data() + h_i * hd;
        std::vector<double> scores(t + 1);
        double max_score = -INFINITY;
        // Keys outside the sliding window get probability 0 (score -inf).
        const int first = c.sliding_window > 0 ? std::max(0, t - c.sliding_window + 1) : 0;
        for (int s = 0; s < first; ++s) scores[s] = -INFINITY;
        for (int s = first; s <= t; ++s) {
          const float* kh = k[s].data() + kv_h * hd;
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += static_cast<double>(qh[d]) * kh[d];
          scores[s] = dot * kq_scale;
          max_score = std::max(max_score, scores[s]);
        }
        std::vector<float> probs(t + 1);
        double denom = 0;
        for (int s = 0; s <= t; ++s) {
          scores[s] = std::exp(scores[s] - max_score);
          denom += scores[s];
        }
        for (int s = 0; s <= t; ++s) probs[s] = static_cast<float>(scores[s] / denom);
        if (options_.f16_kv_cache) probs = round_through(TensorType::kF16, probs);
        for (int d = 0; d < hd; ++d) {
          double sum = 0;
          for (int s = 0; s <= t; ++s) sum += static_cast<double>(probs[s]) * v[s][kv_h * hd + d];
          attn[h_i * hd + d] = static_cast<float>(sum);
        }
      }
      const std::vector<float> o = matvec(layer.wo, attn);
      for (int i = 0; i < c.n_embd; ++i) x[t][i] += o[i];
    }

    // Feed-forward: SwiGLU, dense or a mixture of experts.
    for (int t = 0; t < n_tokens; ++t) {
      const std::vector<float> h = rms_norm(x[t], layer.ffn_norm);
      if (c.n_expert == 0) {
        const std::vector<float> down = swiglu_ffn(layer.w_gate, layer.w_up, layer.w_down, h);
        for (int i = 0; i < c.n_embd; ++i) x[t][i] += down[i];
        continue;
      }
      // Router: softmax over all experts, the n_expert_used most probable (lower id on ties).
      const std::vector<float> logits = matvec(layer.router, h);
      const double top = *std::max_element(logits.begin(), logits.end());
      std::vector<double> prob(c.n_expert);
      double total = 0;
      for (int e = 0; e < c.n_expert; ++e) total += prob[e] = std::exp(logits[e] - top);
      for (double& p : prob) p /= total;
      std::vector<int> ids(c.n_expert);
      for (int e = 0; e < c.n_expert; ++e) ids[e] = e;
      std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return prob[a] > prob[b]; });
      ids.resize(c.n_expert_used);
      double chosen = 0;
      for (int e : ids) chosen += prob[e];
      std::vector<double> sum(c.n_embd, 0.0);
      for (int e : ids) {
        const Expert& ex = layer.experts[e];
        const std::vector<float> out = swiglu_ffn(ex.gate, ex.up, ex.down, h);
        const double w = c.expert_norm ? prob[e] / chosen : prob[e];
        for (int i = 0; i < c.n_embd; ++i) sum[i] += w * out[i];
      }
      if (!layer.shared_gate.empty()) {
        double dot = 0;
        for (int i = 0; i < c.n_embd; ++i) dot += static_cast<double>(layer.shared_gate[i]) * h[i];
        const double g = 1.0 / (1.0 + std::exp(-dot));
        const std::vector<float> out =
            swiglu_ffn(layer.shared.gate, layer.shared.up, layer.shared.down, h);
        for (int i = 0; i < c.n_embd; ++i) sum[i] += g * out[i];
      }
      for (int i = 0; i < c.n_embd; ++i) x[t][i] += static_cast<float>(sum[i]);
    }
  }

  std::vector<std::vector<float>> logits(n_tokens);
  for (int t = 0; t < n_tokens; ++t) logits[t] = matvec(output_, rms_norm(x[t], output_norm_));
  return logits;
}

std::vector<int32_t> NaiveModel::greedy(const std::vector<int32_t>& prompt, int n_steps) const {
  if (prompt.empty()) throw std::invalid_argument("NaiveModel::greedy: empty prompt");
  std::vector<int32_t> seq = prompt;
  std::vector<int32_t> generated;
  for (int step = 0; step < n_steps; ++step) {
    const std::vector<float> last = logits_all(seq).back();
    const auto best = std::max_element(last.begin(), last.end());
    const auto id = static_cast<int32_t>(best - last.begin());
    seq.push_back(id);
    generated.push_back(id);
  }
  return generated;
}

}  // namespace infergrid
