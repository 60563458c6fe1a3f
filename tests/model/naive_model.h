// NaiveModel: a plain fp32 (fp64-accumulating) reference forward pass for the llama, mistral,
// qwen2, qwen3, phi3 and mixture-of-experts (llama with experts, qwen2moe, qwen3moe)
// architectures, for tests only.
//
// It is written independently of the production model (src/model, src/kernels/cpu_backend) so
// that agreement between the two is evidence of correctness: it shares only the GGUF reader and
// the scalar dequantizers. Every weight is dequantized to float at load, every dot product and
// norm accumulates in double, and each call recomputes the whole causal sequence from position
// 0 — no SIMD, no threads, no caches. Meant for small models (a few tens of millions of
// parameters at most).
//
// By default the arithmetic is exact fp32 storage with fp64 accumulation. Options can add the
// roundings llama.cpp's CPU backend makes (its F16 KV cache, and activations converted to each
// weight's "vec_dot" type before a matmul), so that the structure of the forward pass can be
// checked against llama.cpp's logits far more tightly than exact arithmetic would allow.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/tensor_type.h"

namespace infergrid {

class NaiveModel {
 public:
  // Hyperparameters as read from GGUF metadata (llama.cpp key names).
  struct Config {
    std::string arch;  // "llama", "mistral" or "qwen2"
    int n_vocab = 0;
    int n_embd = 0;
    int n_layer = 0;
    int n_ff = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;  // {arch}.attention.key_length, default n_embd / n_head
    int n_rot = 0;     // {arch}.rope.dimension_count, default head_dim
    double rms_eps = 1e-5;
    double rope_base = 10000.0;
    bool rope_neox = false;  // qwen2: pairs (i, i + n_rot/2); llama/mistral: pairs (2i, 2i+1)
    // "none", "linear" or "yarn"; factor is the context extension (freq_scale = 1 / factor).
    std::string rope_scaling = "none";
    double rope_scaling_factor = 1.0;
    int rope_orig_ctx = 0;          // YaRN's original training context
    double rope_attn_factor = 1.0;  // YaRN magnitude scale before the log correction
    bool qk_norm = false;           // qwen3*: RMSNorm of each q and k head before RoPE
    int sliding_window = 0;         // phi3: keys s visible from t when t - s < window
    int n_expert = 0;               // > 0: mixture-of-experts feed-forward
    int n_expert_used = 0;
    int n_ff_expert = 0;
    int n_ff_shared = 0;       // qwen2moe's sigmoid-gated shared expert
    bool expert_norm = false;  // chosen experts' probabilities renormalised to sum 1
  };

  struct Options {
    // Round Q, K, V and the attention probabilities to fp16, as llama.cpp does with its default
    // F16 KV cache (non-flash-attention path).
    bool f16_kv_cache = false;
    // Round each matmul input to the weight's llama.cpp vec_dot type: F16 for F16 weights, Q8_0
    // for Q4_0/Q8_0, Q8_K for the K-quants (F32 weights take activations as they are).
    bool llama_cpp_activations = false;
  };

  // Throws std::runtime_error naming the problem (unknown arch, missing tensor, bad shape).
  static std::unique_ptr<NaiveModel> load(const std::string& path, const Options& options);
  static std::unique_ptr<NaiveModel> load(const std::string& path) { return load(path, {}); }

  const Config& config() const { return config_; }
  int n_vocab() const { return config_.n_vocab; }

  // Logits at every position of one causal sequence that starts at position 0:
  // result[i] is the n_vocab logits after seeing tokens[0..i].
  std::vector<std::vector<float>> logits_all(const std::vector<int32_t>& tokens) const;

  // Appends n_steps argmax tokens to prompt (ties go to the lowest id) and returns only the
  // generated ones.
  std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, int n_steps) const;

 private:
  // A dense row-major matrix: rows x cols, row r at data[r * cols].
  struct Matrix {
    int rows = 0;
    int cols = 0;
    TensorType stored_type = TensorType::kF32;  // as in the file, for llama_cpp_activations
    std::vector<float> data;
  };
  struct Expert {
    Matrix gate, up, down;
  };
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
    std::vector<float> bq, bk, bv;  // empty when the model has no attention biases
    std::vector<float> q_norm, k_norm;
    Matrix router;  // n_expert x n_embd
    std::vector<Expert> experts;
    Expert shared;
    std::vector<float> shared_gate;  // n_embd; empty without a shared expert
  };
  // SwiGLU feed-forward of one expert (or the dense block).
  std::vector<float> swiglu_ffn(const Matrix& gate, const Matrix& up, const Matrix& down,
                                const std::vector<float>& h) const;

  NaiveModel() = default;

  // out[r] = sum_c m[r][c] * x[c], accumulated in double.
  std::vector<float> matvec(const Matrix& m, const std::vector<float>& x) const;
  // x rounded through `type` (quantized and dequantized); x itself when type is F32.
  static std::vector<float> round_through(TensorType type, const std::vector<float>& x);
  std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w) const;
  // Rotates the first n_rot dimensions of one head vector in place, for position pos.
  void rope(float* head, int pos) const;

  Config config_;
  Options options_;
  Matrix token_embd_;  // n_vocab x n_embd
  Matrix output_;      // n_vocab x n_embd (a copy of token_embd_ when tied)
  std::vector<float> output_norm_;
  std::vector<float> rope_freqs_;  // per-pair divisors of the angle (Llama 3); empty when absent
  std::vector<Layer> layers_;
};

}  // namespace infergrid
