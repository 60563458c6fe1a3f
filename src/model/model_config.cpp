#include "model/model_config.h"

#include <fmt/format.h>

namespace infergrid {

const char* architecture_name(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kMistral:
      return "mistral";
    case Architecture::kQwen3:
      return "qwen3";
    case Architecture::kPhi3:
      return "phi3";
    case Architecture::kQwen2Moe:
      return "qwen2moe";
    case Architecture::kQwen3Moe:
      return "qwen3moe";
  }
  return "?";
}

namespace {

Result<int> required_int(const GgufFile& file, const std::string& key, int64_t min, int64_t max) {
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> value, file.get_int(key));
  if (!value) return make_error(StatusCode::kCorrupt, "missing required metadata '{}'", key);
  if (*value < min || *value > max) {
    return make_error(StatusCode::kCorrupt, "metadata '{}' = {} is outside [{}, {}]", key, *value,
                      min, max);
  }
  return static_cast<int>(*value);
}

Result<int> optional_int(const GgufFile& file, const std::string& key, int fallback, int64_t min,
                         int64_t max) {
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> value, file.get_int(key));
  if (!value) return fallback;
  if (*value < min || *value > max) {
    return make_error(StatusCode::kCorrupt, "metadata '{}' = {} is outside [{}, {}]", key, *value,
                      min, max);
  }
  return static_cast<int>(*value);
}

Result<float> optional_float(const GgufFile& file, const std::string& key, float fallback) {
  IG_ASSIGN_OR_RETURN(std::optional<double> value, file.get_float(key));
  return value ? static_cast<float>(*value) : fallback;
}

}  // namespace

Result<ModelConfig> ModelConfig::from_gguf(const GgufFile& file) {
  ModelConfig c;
  IG_ASSIGN_OR_RETURN(std::optional<std::string_view> arch,
                      file.get_string("general.architecture"));
  if (!arch) return Status(StatusCode::kCorrupt, "missing general.architecture");
  c.arch_name = std::string(*arch);
  bool neox_rope = false;
  if (c.arch_name == "llama") {
    c.arch = Architecture::kLlama;
  } else if (c.arch_name == "qwen2") {
    c.arch = Architecture::kQwen2;
    c.qkv_bias = true;
    neox_rope = true;
  } else if (c.arch_name == "mistral") {
    c.arch = Architecture::kMistral;
  } else if (c.arch_name == "qwen3") {
    c.arch = Architecture::kQwen3;
    c.qk_norm = true;
    neox_rope = true;
  } else if (c.arch_name == "phi3") {
    c.arch = Architecture::kPhi3;
    c.fused_qkv = true;
    c.fused_gate_up = true;
    neox_rope = true;
  } else if (c.arch_name == "qwen2moe") {
    c.arch = Architecture::kQwen2Moe;
    c.qkv_bias = true;
    neox_rope = true;
  } else if (c.arch_name == "qwen3moe") {
    c.arch = Architecture::kQwen3Moe;
    c.qk_norm = true;
    neox_rope = true;
    c.expert_weights_norm = true;
  } else {
    return make_error(StatusCode::kUnsupported,
                      "architecture '{}' is not supported (supported: llama, mistral, qwen2, "
                      "qwen3, phi3, qwen2moe, qwen3moe)",
                      c.arch_name);
  }
  IG_ASSIGN_OR_RETURN(std::optional<std::string_view> name, file.get_string("general.name"));
  if (name) c.model_name = std::string(*name);

  const std::string p = c.arch_name + ".";
  constexpr int64_t kMaxDim = 1 << 20;
  IG_ASSIGN_OR_RETURN(c.n_embd, required_int(file, p + "embedding_length", 1, kMaxDim));
  IG_ASSIGN_OR_RETURN(c.n_layer, required_int(file, p + "block_count", 1, 4096));
  IG_ASSIGN_OR_RETURN(c.n_ff, required_int(file, p + "feed_forward_length", 1, kMaxDim));
  IG_ASSIGN_OR_RETURN(c.n_head, required_int(file, p + "attention.head_count", 1, 4096));
  IG_ASSIGN_OR_RETURN(c.n_head_kv,
                      optional_int(file, p + "attention.head_count_kv", c.n_head, 1, c.n_head));
  if (c.n_head % c.n_head_kv != 0) {
    return make_error(StatusCode::kCorrupt, "head_count {} is not a multiple of head_count_kv {}",
                      c.n_head, c.n_head_kv);
  }
  IG_ASSIGN_OR_RETURN(std::optional<int64_t> key_length, file.get_int(p + "attention.key_length"));
  if (!key_length && c.n_embd % c.n_head != 0) {
    return make_error(StatusCode::kCorrupt, "embedding_length {} not divisible by head_count {}",
                      c.n_embd, c.n_head);
  }
  // The head size is key_length where the file gives it (qwen3: q is wider than n_embd).
  IG_ASSIGN_OR_RETURN(c.head_dim,
                      optional_int(file, p + "attention.key_length", c.n_embd / c.n_head, 2, 512));
  IG_ASSIGN_OR_RETURN(int value_length,
                      optional_int(file, p + "attention.value_length", c.head_dim, 2, 512));
  if (value_length != c.head_dim) {
    return Status(StatusCode::kUnsupported, "key_length != value_length is not supported");
  }
  IG_ASSIGN_OR_RETURN(c.n_ctx_train, optional_int(file, p + "context_length", 2048, 1, 1 << 24));
  IG_ASSIGN_OR_RETURN(c.rms_eps,
                      optional_float(file, p + "attention.layer_norm_rms_epsilon", 1e-5f));
  if (!(c.rms_eps > 0)) return Status(StatusCode::kCorrupt, "layer_norm_rms_epsilon must be > 0");

  IG_ASSIGN_OR_RETURN(std::optional<int64_t> vocab_size, file.get_int(p + "vocab_size"));
  if (vocab_size) {
    c.n_vocab = static_cast<int>(*vocab_size);
  } else {
    const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
    if (tokens != nullptr && tokens->type == GgufValueType::kArray) {
      c.n_vocab = static_cast<int>(tokens->array_count);
    }
    // Otherwise the loader takes it from token_embd.weight.
  }

  IG_ASSIGN_OR_RETURN(c.sliding_window,
                      optional_int(file, p + "attention.sliding_window", 0, 0, 1 << 30));
  if (c.arch != Architecture::kPhi3) {
    // llama.cpp applies the window only to phi3 among these architectures; elsewhere the key
    // is ignored, as there.
    c.sliding_window = 0;
  }

  IG_ASSIGN_OR_RETURN(c.n_expert, optional_int(file, p + "expert_count", 0, 0, 1024));
  if (c.n_expert > 0) {
    IG_ASSIGN_OR_RETURN(c.n_expert_used,
                        required_int(file, p + "expert_used_count", 1, c.n_expert));
    IG_ASSIGN_OR_RETURN(c.n_ff_expert,
                        optional_int(file, p + "expert_feed_forward_length", c.n_ff, 1, kMaxDim));
    IG_ASSIGN_OR_RETURN(c.n_ff_shared,
                        optional_int(file, p + "expert_shared_feed_forward_length", 0, 0, kMaxDim));
    // Mixtral renormalises the top-k weights; qwen2moe does not; qwen3moe does (set above).
    if (c.arch == Architecture::kLlama || c.arch == Architecture::kMistral) {
      c.expert_weights_norm = true;
    }
  } else if (c.arch == Architecture::kQwen2Moe || c.arch == Architecture::kQwen3Moe) {
    return make_error(StatusCode::kCorrupt, "{} needs {}expert_count > 0", c.arch_name, p);
  }

  RopeParams& rope = c.rope;
  rope.style = neox_rope ? RopeStyle::kNeox : RopeStyle::kNormal;
  IG_ASSIGN_OR_RETURN(rope.n_dims,
                      optional_int(file, p + "rope.dimension_count", c.head_dim, 2, c.head_dim));
  if (rope.n_dims % 2 != 0)
    return Status(StatusCode::kCorrupt, "rope.dimension_count must be even");
  IG_ASSIGN_OR_RETURN(rope.freq_base, optional_float(file, p + "rope.freq_base", 10000.0f));
  if (!(rope.freq_base > 1.0f)) return Status(StatusCode::kCorrupt, "rope.freq_base must be > 1");
  IG_ASSIGN_OR_RETURN(std::optional<std::string_view> scaling,
                      file.get_string(p + "rope.scaling.type"));
  IG_ASSIGN_OR_RETURN(float factor, optional_float(file, p + "rope.scaling.factor", 0.0f));
  IG_ASSIGN_OR_RETURN(float scale_linear, optional_float(file, p + "rope.scale_linear", 0.0f));
  std::string scaling_type =
      scaling ? std::string(*scaling) : (scale_linear > 0 ? "linear" : "none");
  if (factor <= 0) factor = scale_linear > 0 ? scale_linear : 1.0f;
  IG_ASSIGN_OR_RETURN(
      rope.n_ctx_orig,
      optional_int(file, p + "rope.scaling.original_context_length", c.n_ctx_train, 1, 1 << 24));
  if (scaling_type == "none" || factor == 1.0f) {
    rope.freq_scale = 1.0f;
  } else if (scaling_type == "linear") {
    rope.freq_scale = 1.0f / factor;
  } else if (scaling_type == "yarn") {
    rope.freq_scale = 1.0f / factor;
    rope.ext_factor = 1.0f;
    IG_ASSIGN_OR_RETURN(rope.attn_factor,
                        optional_float(file, p + "rope.scaling.attn_factor", 1.0f));
  } else {
    return make_error(StatusCode::kUnsupported,
                      "rope scaling type '{}' is not supported "
                      "(supported: none, linear, yarn)",
                      scaling_type);
  }
  return c;
}

}  // namespace infergrid
