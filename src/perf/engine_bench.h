// Serving-engine benchmarks, run in-process against the Scheduler so the numbers are the
// engine's own (no HTTP): each reports its measurement next to a reference measured in the same
// run.
//  - throughput: decode tokens/s with 1..N concurrent sequences, as a ratio to batch 1 (weights
//    are read once per step, so throughput should rise with concurrency);
//  - prefix: time to first token of requests sharing a long system prompt, prefix cache on vs
//    off;
//  - chunked: inter-token latency of running streams while a long prompt arrives, chunked
//    prefill on vs off;
//  - tier-codec (not run by default): greedy tokens and log-probabilities of prompts whose
//    prefix was loaded back from an int8 tier, against the same prompts computed, with the
//    native tier as the exact reference;
//  - kv-type (not run by default): each KV cache type against f32, the greedy tokens and
//    log-probabilities of the same prompts, KV bytes per token and decode tokens/s at a long
//    context.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace infergrid {

struct EngineBenchOptions {
  std::vector<std::string> modes = {"throughput", "prefix", "chunked"};
  std::vector<int> concurrency = {1, 2, 4, 8, 16, 32};
  int decode_steps = 16;  // measured decode steps per concurrency level
  int prefix_requests = 32;
  int prefix_tokens = 1000;  // shared system prompt
  int suffix_tokens = 24;    // per-request question after it
  int streams = 4;           // running streams in the chunked-prefill test
  int long_prompt_tokens = 4000;
  int max_batch_tokens = 512;
  int codec_prompts = 16;
  int codec_prompt_tokens = 512;
  int codec_generate = 32;
  int kv_type_sequences = 4;   // decode speed of each KV cache type: sequences ...
  int kv_type_context = 1024;  // ... of this many cached tokens
  KvType kv_type = kDefaultKvType;
};

struct EngineBenchReport {
  std::string text;
  std::string json;
};

Result<EngineBenchReport> run_engine_bench(const Model& model, const Tokenizer& tokenizer,
                                           Backend& backend, const EngineBenchOptions& options);

}  // namespace infergrid
