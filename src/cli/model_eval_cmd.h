// `infergrid model eval` and `infergrid model perplexity`: the forward pass as llama.cpp users
// inspect it. eval prints the logits at each position of a token sequence (top-k or all, text
// or JSON); perplexity scores a text file the way llama-perplexity does (consecutive windows of
// n_ctx tokens, each starting with BOS, the second half of each window scored against the
// first half as context), so the two tools' numbers compare directly.
#pragma once

#include <string>

#include "core/kv_type.h"

namespace infergrid {

struct ModelEvalArgs {
  std::string model;
  std::string tokens;  // ids separated by spaces or commas
  int top_k = 5;
  bool all_logits = false;
  bool json = false;
  int threads = 0;
  KvType kv_cache_type = kDefaultKvType;
};

struct PerplexityArgs {
  std::string model;
  std::string file;
  int ctx = 512;
  int batch = 512;
  int threads = 0;
  KvType kv_cache_type = kDefaultKvType;
};

// Both return the process exit code (errors on stderr).
int run_model_eval(const ModelEvalArgs& args);
int run_model_perplexity(const PerplexityArgs& args);

}  // namespace infergrid
