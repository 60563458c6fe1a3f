// Workloads for `bench serve`: the prompts and output lengths of every request, made up front
// from a seed so that two runs with the same options send the same text.
//  - random: independent prompts with input/output lengths spread around the requested ones;
//  - shared-prefix: each request is one tenant's long system prompt plus a question of its own,
//    the case a prefix cache is for;
//  - multi-turn: conversations whose every turn resends the whole history (the runner adds the
//    server's answers, so only the user turns are fixed here);
//  - trace: Mooncake-format JSONL replay, where equal hash ids become equal text blocks.
//
// Prompts are words from a fixed list, chosen so that a word is about one token in common
// tokenizers; exact token counts come back from the server's usage, not from here.
// Randomness uses std::mt19937_64 (fully specified by the standard) with our own distributions,
// so a seed gives the same workload with every compiler and standard library.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infergrid {

enum class WorkloadKind { kRandom, kSharedPrefix, kMultiTurn, kTrace };

Result<WorkloadKind> parse_workload_kind(std::string_view name);
const char* workload_kind_name(WorkloadKind kind);

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kRandom;
  // Requests to make; 0 means 100 for random and shared-prefix and every line for a trace.
  // Multi-turn always makes conversations x turns requests.
  int num_requests = 0;
  int input_len = 256;       // words (about tokens) per prompt, question, or user turn
  int output_len = 64;       // tokens per answer
  double range_ratio = 0.0;  // lengths are uniform in [len * (1 - r), len * (1 + r)]
  int tenants = 4;           // distinct system prompts (shared-prefix; multi-turn with a prefix)
  // Words per system prompt; -1 means 1024 for shared-prefix and none for multi-turn.
  int prefix_len = -1;
  int conversations = 8;
  int turns = 4;
  std::string trace_file;
  uint64_t seed = 0;
};

// One request of a random, shared-prefix or trace workload.
struct WorkloadRequest {
  std::string system;  // a system message for chat, a text prefix for completions; may be empty
  std::string user;
  int output_tokens = 0;
  double trace_time_ms = 0;  // trace: when to send, relative to the start of the run
};

// The fixed parts of one multi-turn conversation.
struct Conversation {
  std::string system;  // may be empty
  std::vector<std::string> user_turns;
  std::vector<int> output_tokens;  // one per turn
};

struct Workload {
  WorkloadKind kind = WorkloadKind::kRandom;
  std::vector<WorkloadRequest> requests;    // every kind but multi-turn
  std::vector<Conversation> conversations;  // multi-turn

  size_t total_requests() const;
};

Result<Workload> make_workload(const WorkloadOptions& options);

// One line of a Mooncake trace. Each hash id stands for one kTraceBlockTokens-token block of
// prompt; equal ids across lines mean equal blocks (a shared prefix).
constexpr int kTraceBlockTokens = 512;
struct TraceEntry {
  double timestamp_ms = 0;
  int input_length = 0;
  int output_length = 0;
  std::vector<uint64_t> hash_ids;
};

// Parses JSONL text; blank lines are skipped, and an error names `source` and the line number.
Result<std::vector<TraceEntry>> parse_trace(std::string_view text, std::string_view source);

// The prompt for one trace line: the block text of each hash id in order, cut or padded (with
// words unique to `line_index`) to input_length words. Equal hash-id prefixes give equal text
// prefixes for the same seed.
std::string trace_prompt(const TraceEntry& entry, uint64_t seed, uint64_t line_index);

// `n_words` words from the fixed list, separated by single spaces.
std::string random_words(std::mt19937_64& rng, int n_words);

}  // namespace infergrid
