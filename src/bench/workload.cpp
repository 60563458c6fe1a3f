#include "bench/workload.h"

#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace infergrid {

namespace {

// Short, frequent English words: each is a single token (with its leading space) in the common
// BPE vocabularies, so a prompt of N words is close to N tokens.
constexpr std::string_view kWords[] = {
    "the",     "of",     "and",    "to",     "in",     "is",      "that",    "for",     "it",
    "as",      "was",    "with",   "be",     "by",     "on",      "not",     "he",      "this",
    "are",     "or",     "his",    "from",   "at",     "which",   "but",     "have",    "an",
    "had",     "they",   "you",    "were",   "their",  "one",     "all",     "we",      "can",
    "her",     "has",    "there",  "been",   "if",     "more",    "when",    "will",    "would",
    "who",     "so",     "no",     "she",    "other",  "its",     "may",     "these",   "what",
    "them",    "than",   "some",   "him",    "time",   "into",    "only",    "do",      "could",
    "new",     "about",  "two",    "first",  "then",   "also",    "any",     "like",    "our",
    "over",    "such",   "my",     "made",   "out",    "after",   "should",  "where",   "most",
    "used",    "very",   "many",   "before", "must",   "through", "back",    "years",   "much",
    "your",    "way",    "well",   "down",   "work",   "even",    "because", "life",    "good",
    "same",    "under",  "world",  "each",   "long",   "those",   "both",    "while",   "day",
    "make",    "great",  "people", "still",  "own",    "see",     "men",     "state",   "between",
    "water",   "use",    "last",   "here",   "never",  "old",     "being",   "might",   "place",
    "number",  "part",   "high",   "three",  "small",  "just",    "every",   "found",   "case",
    "point",   "year",   "know",   "take",   "since",  "without", "against", "another", "large",
    "end",     "system", "form",   "again",  "right",  "power",   "side",    "hand",    "off",
    "general", "less",   "light",  "order",  "line",   "thing",   "things",  "home",    "city",
    "head",    "name",   "set",    "left",   "house",  "given",   "fact",    "group",   "child",
    "body",    "young",  "war",    "public", "book",   "sound",   "four",    "school",  "land",
    "data",    "model",  "code",   "table",  "value",  "field",   "cache",   "token",   "block",
    "query",   "server", "client", "memory", "disk",   "store",   "page",    "file",    "graph",
    "tree",    "node",   "edge",   "array",  "list",   "queue",   "stack",   "image",   "color",
    "music",   "river",  "stone",  "green",  "north",  "south",   "east",    "west",    "early",
    "late",    "open",   "close",  "short",  "full",   "half",    "fast",    "slow",    "hot",
    "cold",    "red",    "blue",   "black",  "white",  "gold",    "iron",    "glass",   "paper",
    "wood",    "road",   "bridge", "tower",  "garden", "market",  "ship",    "train",   "plane",
    "engine",  "wheel",  "door",   "window", "chair",  "bread",   "salt",    "milk",    "tea",
    "yes",     "sea",    "sun",    "moon",   "star",   "rain",    "snow",    "wind",    "fire",
    "song",
};

constexpr uint64_t kSaltTenant = 0x7465'6e61'6e74'0001ULL;
constexpr uint64_t kSaltConversation = 0x636f'6e76'0002ULL;
constexpr uint64_t kSaltTraceBlock = 0x626c'6f63'6b00'0003ULL;
constexpr uint64_t kSaltTracePad = 0x7061'6464'0004ULL;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A seed for one independent stream (a tenant, a trace block): the text of that stream does not
// depend on how many other things were drawn before it.
uint64_t stream_seed(uint64_t seed, uint64_t salt, uint64_t index) {
  return splitmix64(splitmix64(seed ^ salt) ^ index);
}

// Uniform in [lo, hi]; modulo bias is far below anything a benchmark can see.
int uniform_int(std::mt19937_64& rng, int lo, int hi) {
  return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

int spread_length(std::mt19937_64& rng, int length, double ratio) {
  const int lo = std::max(1, static_cast<int>(std::lround(length * (1.0 - ratio))));
  const int hi = std::max(lo, static_cast<int>(std::lround(length * (1.0 + ratio))));
  return uniform_int(rng, lo, hi);
}

void append_words(std::string& out, std::mt19937_64& rng, int n_words) {
  for (int i = 0; i < n_words; ++i) {
    if (!out.empty()) out += ' ';
    out.append(kWords[rng() % std::size(kWords)]);
  }
}

std::string tenant_prompt(uint64_t seed, int tenant, int n_words) {
  std::mt19937_64 rng(stream_seed(seed, kSaltTenant, static_cast<uint64_t>(tenant)));
  return random_words(rng, n_words);
}

Status validate(const WorkloadOptions& o) {
  const auto positive = [](int value, const char* flag) -> Status {
    if (value < 1) return make_error(StatusCode::kInvalidArgument, "{} must be >= 1", flag);
    return Status::ok();
  };
  IG_RETURN_IF_ERROR(positive(o.input_len, "--input-len"));
  IG_RETURN_IF_ERROR(positive(o.output_len, "--output-len"));
  IG_RETURN_IF_ERROR(positive(o.tenants, "--tenants"));
  IG_RETURN_IF_ERROR(positive(o.conversations, "--conversations"));
  IG_RETURN_IF_ERROR(positive(o.turns, "--turns"));
  if (o.num_requests < 0) {
    return make_error(StatusCode::kInvalidArgument, "--num-requests must be >= 0");
  }
  if (o.prefix_len < -1) {
    return make_error(StatusCode::kInvalidArgument, "--prefix-len must be >= 0");
  }
  if (!(o.range_ratio >= 0.0 && o.range_ratio < 1.0)) {
    return make_error(StatusCode::kInvalidArgument, "--range-ratio must be in [0, 1), got {}",
                      o.range_ratio);
  }
  if (o.kind == WorkloadKind::kTrace && o.trace_file.empty()) {
    return make_error(StatusCode::kInvalidArgument, "the trace workload needs --trace-file");
  }
  return Status::ok();
}

Result<Workload> make_trace_workload(const WorkloadOptions& o) {
  std::ifstream in(o.trace_file, std::ios::binary);
  if (!in) return make_error(StatusCode::kNotFound, "cannot open trace file '{}'", o.trace_file);
  std::stringstream text;
  text << in.rdbuf();
  IG_ASSIGN_OR_RETURN(std::vector<TraceEntry> entries, parse_trace(text.str(), o.trace_file));
  if (entries.empty()) {
    return make_error(StatusCode::kInvalidArgument, "trace file '{}' has no requests",
                      o.trace_file);
  }
  if (o.num_requests > 0 && static_cast<size_t>(o.num_requests) < entries.size()) {
    entries.resize(static_cast<size_t>(o.num_requests));
  }
  Workload w;
  w.kind = WorkloadKind::kTrace;
  for (size_t i = 0; i < entries.size(); ++i) {
    WorkloadRequest r;
    r.user = trace_prompt(entries[i], o.seed, i);
    r.output_tokens = entries[i].output_length;
    r.trace_time_ms = entries[i].timestamp_ms;
    w.requests.push_back(std::move(r));
  }
  return w;
}

}  // namespace

Result<WorkloadKind> parse_workload_kind(std::string_view name) {
  for (WorkloadKind k : {WorkloadKind::kRandom, WorkloadKind::kSharedPrefix,
                         WorkloadKind::kMultiTurn, WorkloadKind::kTrace}) {
    if (name == workload_kind_name(k)) return k;
  }
  return make_error(StatusCode::kInvalidArgument,
                    "unknown workload '{}' (random, shared-prefix, multi-turn, trace)", name);
}

const char* workload_kind_name(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kRandom:
      return "random";
    case WorkloadKind::kSharedPrefix:
      return "shared-prefix";
    case WorkloadKind::kMultiTurn:
      return "multi-turn";
    case WorkloadKind::kTrace:
      return "trace";
  }
  return "?";
}

size_t Workload::total_requests() const {
  size_t n = requests.size();
  for (const Conversation& c : conversations) n += c.user_turns.size();
  return n;
}

std::string random_words(std::mt19937_64& rng, int n_words) {
  std::string out;
  out.reserve(static_cast<size_t>(n_words) * 6);
  append_words(out, rng, n_words);
  return out;
}

Result<Workload> make_workload(const WorkloadOptions& o) {
  IG_RETURN_IF_ERROR(validate(o));
  if (o.kind == WorkloadKind::kTrace) return make_trace_workload(o);

  std::mt19937_64 rng(o.seed);
  Workload w;
  w.kind = o.kind;
  const int n = o.num_requests > 0 ? o.num_requests : 100;
  switch (o.kind) {
    case WorkloadKind::kRandom:
      for (int i = 0; i < n; ++i) {
        WorkloadRequest r;
        r.user = random_words(rng, spread_length(rng, o.input_len, o.range_ratio));
        r.output_tokens = spread_length(rng, o.output_len, o.range_ratio);
        w.requests.push_back(std::move(r));
      }
      break;
    case WorkloadKind::kSharedPrefix: {
      const int prefix_len = o.prefix_len >= 0 ? o.prefix_len : 1024;
      std::vector<std::string> prompts;
      prompts.reserve(static_cast<size_t>(o.tenants));
      for (int t = 0; t < o.tenants; ++t) prompts.push_back(tenant_prompt(o.seed, t, prefix_len));
      for (int i = 0; i < n; ++i) {
        WorkloadRequest r;
        r.system = prompts[static_cast<size_t>(uniform_int(rng, 0, o.tenants - 1))];
        r.user = random_words(rng, spread_length(rng, o.input_len, o.range_ratio));
        r.output_tokens = spread_length(rng, o.output_len, o.range_ratio);
        w.requests.push_back(std::move(r));
      }
      break;
    }
    case WorkloadKind::kMultiTurn: {
      const int prefix_len = std::max(0, o.prefix_len);
      for (int c = 0; c < o.conversations; ++c) {
        Conversation conv;
        if (prefix_len > 0) conv.system = tenant_prompt(o.seed, c % o.tenants, prefix_len);
        std::mt19937_64 crng(stream_seed(o.seed, kSaltConversation, static_cast<uint64_t>(c)));
        for (int t = 0; t < o.turns; ++t) {
          conv.user_turns.push_back(
              random_words(crng, spread_length(crng, o.input_len, o.range_ratio)));
          conv.output_tokens.push_back(spread_length(crng, o.output_len, o.range_ratio));
        }
        w.conversations.push_back(std::move(conv));
      }
      break;
    }
    case WorkloadKind::kTrace:
      break;  // handled above
  }
  return w;
}

Result<std::vector<TraceEntry>> parse_trace(std::string_view text, std::string_view source) {
  std::vector<TraceEntry> entries;
  size_t line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const auto bad = [&](std::string_view why) {
      return make_error(StatusCode::kCorrupt, "{}:{}: {}", source, line_number, why);
    };
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return bad("not valid JSON");
    if (!j.is_object()) return bad("expected a JSON object");
    TraceEntry e;
    const auto timestamp = j.find("timestamp");
    if (timestamp == j.end() || !timestamp->is_number() || timestamp->get<double>() < 0) {
      return bad("\"timestamp\" must be a number of milliseconds >= 0");
    }
    e.timestamp_ms = timestamp->get<double>();
    for (auto [key, field] : {std::pair{"input_length", &e.input_length},
                              std::pair{"output_length", &e.output_length}}) {
      const auto value = j.find(key);
      if (value == j.end() || !value->is_number_integer() || value->get<int64_t>() < 1 ||
          value->get<int64_t>() > (1 << 24)) {
        return bad(fmt::format("\"{}\" must be a positive integer", key));
      }
      *field = value->get<int>();
    }
    if (const auto ids = j.find("hash_ids"); ids != j.end()) {
      if (!ids->is_array()) return bad("\"hash_ids\" must be an array of integers");
      for (const auto& id : *ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0) {
          return bad("\"hash_ids\" must be an array of non-negative integers");
        }
        e.hash_ids.push_back(id.get<uint64_t>());
      }
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string trace_prompt(const TraceEntry& entry, uint64_t seed, uint64_t line_index) {
  std::string out;
  out.reserve(static_cast<size_t>(entry.input_length) * 6);
  int words = 0;
  for (uint64_t id : entry.hash_ids) {
    if (words >= entry.input_length) break;
    const int n = std::min(kTraceBlockTokens, entry.input_length - words);
    std::mt19937_64 rng(stream_seed(seed, kSaltTraceBlock, id));
    append_words(out, rng, n);
    words += n;
  }
  if (words < entry.input_length) {
    std::mt19937_64 rng(stream_seed(seed, kSaltTracePad, line_index));
    append_words(out, rng, entry.input_length - words);
  }
  return out;
}

}  // namespace infergrid
