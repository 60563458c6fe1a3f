// ModelConfig: the hyperparameters of a decoder-only transformer, read from GGUF metadata with
// llama.cpp's key names ("{arch}.embedding_length", ...). Validation happens here, once, so
// the forward pass can trust every dimension.
#pragma once

#include <string>

#include "core/status.h"
#include "kernels/backend.h"
#include "model/gguf.h"

namespace infergrid {

enum class Architecture { kLlama, kQwen2, kMistral };

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
  bool qkv_bias = false;  // qwen2
  RopeParams rope;        // freq_factors filled in by the model loader when present

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }

  static Result<ModelConfig> from_gguf(const GgufFile& file);
};

}  // namespace infergrid
