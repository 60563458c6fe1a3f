// Golden outputs produced by llama.cpp for the synthetic models in <shared>/golden (see its
// README.md): the prompt, llama.cpp's greedy continuation, and the logits at every position of
// prompt + continuation, for teacher-forced comparison.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace infergrid {

struct GoldenLogits {
  std::vector<int32_t> prompt_tokens;  // starts with BOS
  std::vector<int32_t> greedy_tokens;  // llama.cpp's greedy choices after the prompt
  // One row of n_vocab logits per position of prompt_tokens + greedy_tokens.
  std::vector<std::vector<float>> logits;

  // prompt_tokens followed by greedy_tokens: the sequence the logit rows belong to.
  std::vector<int32_t> all_tokens() const;
};

// The golden folder (<INFERGRID_SHARED_DIR>/golden), or "" when it is not there.
std::string golden_dir();

// Path of models/NAME.gguf, or "" when the golden folder or the model is absent.
std::string golden_model_path(const std::string& name);

// Reads logits/NAME.json (NAME as "tiny-llama-f32"); nullopt when the golden folder or the file
// is absent. Throws std::runtime_error when the file exists but is malformed.
std::optional<GoldenLogits> load_golden(const std::string& name);

}  // namespace infergrid
