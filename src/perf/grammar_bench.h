// Constrained-decoding benchmark: what the grammar costs per generated token (the mask, its use
// in the sampler, advancing the matcher) over the vocabularies of real models, next to the
// decode step of a model measured in the same run.
//
// Logits are random, so the walk covers what any model may do, not one model's habits; "cold"
// is the first generation of a freshly compiled grammar (empty per-position cache), "warm" the
// later ones sharing it, as requests with the same schema do on a server.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/cpu_backend.h"
#include "model/model.h"

namespace infergrid {

struct GrammarBenchOptions {
  std::vector<std::string> vocabularies;  // GGUF files whose tokenizers are measured
  int generations = 20;                   // per grammar and vocabulary; the first is cold
  int max_tokens = 256;
  uint64_t seed = 1;
};

// `model`: the model whose decode step is the reference (its own vocabulary is measured too).
Result<std::string> run_grammar_bench(const Model& model, CpuBackend& backend,
                                      const GrammarBenchOptions& options);

}  // namespace infergrid
