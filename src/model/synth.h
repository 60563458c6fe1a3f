// Synthetic models: writes a valid GGUF of a chosen architecture, size and tensor type with
// deterministic random weights and a small real byte-level BPE vocabulary (trained on a
// built-in corpus). Used for tests, benchmarks and the embedded default model.
//
// Invariant: the same SynthOptions always produce a byte-identical file (weights come from a
// counter-based generator keyed by tensor name and row, independent of thread scheduling).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/tensor_type.h"

namespace infergrid {

struct SynthOptions {
  // llama (Llama 3 style), llama2, mistral, qwen2, qwen3, and the mixtures of experts mixtral
  // (GGUF arch llama with experts) and qwen3moe.
  std::string arch = "llama";
  std::string size = "10m";  // preset: 1m, 10m, 100m, 1b (parameters, approximately)
  TensorType type = TensorType::kQ8_0;
  uint64_t seed = 42;
  // Overrides of the preset (0 = keep the preset's value).
  int n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_vocab = 0, n_ctx = 0;
  // Mixtures of experts (0 = default: 8 experts, 2 used, each of n_ff / 4).
  int n_expert = 0, n_expert_used = 0, n_ff_expert = 0;
  bool tied_output = false;
};

struct SynthSummary {
  std::string path;
  int64_t n_params = 0;
  uint64_t file_bytes = 0;
  std::string description;
};

std::vector<std::string> synth_size_presets();
Result<SynthSummary> synthesize_model(const SynthOptions& options, const std::string& path,
                                      int n_threads = 0);

}  // namespace infergrid
