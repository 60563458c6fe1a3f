// ModelConfig: the hyperparameters of a decoder-only transformer, read from GGUF metadata with
// llama.cpp's key names ("{arch}.embedding_length", ...). Validation happens here, once, so
// the forward pass can trust every dimension.
//
// Architectures: llama (dense, or Mixtral-style experts when expert_count > 0), mistral, qwen2
// (q/k/v biases), qwen3 (per-head RMSNorm of q and k), phi3 (fused qkv and gate|up, sliding
// window), qwen2moe (experts plus a sigmoid-gated shared expert), qwen3moe.
#pragma once

#include <algorithm>
#include <string>

#include "core/status.h"
#include "kernels/backend.h"
#include "model/gguf.h"

namespace infergrid {

enum class Architecture { kLlama, kQwen2, kMistral, kQwen3, kPhi3, kQwen2Moe, kQwen3Moe };

const char* architecture_name(Architecture arch);

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string arch_name;
  std::string model_name;  // general.name, if present
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  bool qkv_bias = false;       // qwen2
  bool qk_norm = false;        // qwen3: RMSNorm over each head of q and k before RoPE
  bool fused_qkv = false;      // phi3: one attn_qkv matrix (q rows, then k, then v)
  bool fused_gate_up = false;  // phi3: one ffn_up matrix of 2 n_ff rows (gate half first)
  int sliding_window = 0;      // > 0: a query at p sees keys k with p - k < sliding_window
  RopeParams rope;             // freq_factors filled in by the model loader when present

  // Mixture of experts (n_expert == 0: a dense feed-forward of n_ff).
  int n_expert = 0;
  int n_expert_used = 0;
  int n_ff_expert = 0;               // each expert's hidden size
  int n_ff_shared = 0;               // qwen2moe's shared expert (0: none)
  bool expert_weights_norm = false;  // renormalise the chosen experts' weights to sum to 1

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
  bool is_moe() const { return n_expert > 0; }
  // The widest feed-forward hidden layer any block computes (scratch sizing).
  int max_ff() const { return std::max({n_ff, n_ff_expert, n_ff_shared}); }
  // The longest matmul input row (n_embd, q_dim into attn_output, or a feed-forward width):
  // what a backend's activation scratch must hold per token.
  int max_matmul_cols() const { return std::max({n_embd, q_dim(), max_ff()}); }

  static Result<ModelConfig> from_gguf(const GgufFile& file);
};

}  // namespace infergrid
