// Workloads are reproducible from a seed, have the requested shapes, and traces turn equal hash
// ids into equal text.
#include "bench/workload.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace infergrid {
namespace {

int word_count(const std::string& s) {
  std::istringstream in(s);
  int n = 0;
  std::string w;
  while (in >> w) ++n;
  return n;
}

std::vector<std::string> words_of(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

WorkloadOptions options(WorkloadKind kind, uint64_t seed = 1) {
  WorkloadOptions o;
  o.kind = kind;
  o.seed = seed;
  o.num_requests = 20;
  o.input_len = 50;
  o.output_len = 16;
  o.prefix_len = 200;
  o.tenants = 3;
  o.conversations = 4;
  o.turns = 3;
  return o;
}

bool same_requests(const Workload& a, const Workload& b) {
  if (a.requests.size() != b.requests.size()) return false;
  for (size_t i = 0; i < a.requests.size(); ++i) {
    if (a.requests[i].system != b.requests[i].system || a.requests[i].user != b.requests[i].user ||
        a.requests[i].output_tokens != b.requests[i].output_tokens) {
      return false;
    }
  }
  if (a.conversations.size() != b.conversations.size()) return false;
  for (size_t i = 0; i < a.conversations.size(); ++i) {
    if (a.conversations[i].system != b.conversations[i].system ||
        a.conversations[i].user_turns != b.conversations[i].user_turns ||
        a.conversations[i].output_tokens != b.conversations[i].output_tokens) {
      return false;
    }
  }
  return true;
}

TEST(Workload, SameSeedSameRequestsDifferentSeedDifferentRequests) {
  for (WorkloadKind kind :
       {WorkloadKind::kRandom, WorkloadKind::kSharedPrefix, WorkloadKind::kMultiTurn}) {
    WorkloadOptions o = options(kind, 7);
    o.range_ratio = 0.5;
    auto a = make_workload(o);
    auto b = make_workload(o);
    o.seed = 8;
    auto c = make_workload(o);
    ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok()) << workload_kind_name(kind);
    EXPECT_TRUE(same_requests(*a, *b)) << workload_kind_name(kind);
    EXPECT_FALSE(same_requests(*a, *c)) << workload_kind_name(kind);
  }
}

TEST(Workload, RandomLengthsAreExactWithoutRangeRatioAndSpreadWithIt) {
  auto fixed = make_workload(options(WorkloadKind::kRandom));
  ASSERT_TRUE(fixed.is_ok());
  ASSERT_EQ(fixed->requests.size(), 20u);
  for (const WorkloadRequest& r : fixed->requests) {
    EXPECT_TRUE(r.system.empty());
    EXPECT_EQ(word_count(r.user), 50);
    EXPECT_EQ(r.output_tokens, 16);
  }
  WorkloadOptions o = options(WorkloadKind::kRandom);
  o.range_ratio = 0.5;
  o.num_requests = 200;
  auto spread = make_workload(o);
  ASSERT_TRUE(spread.is_ok());
  std::set<int> input_lengths;
  for (const WorkloadRequest& r : spread->requests) {
    const int n = word_count(r.user);
    EXPECT_GE(n, 25);
    EXPECT_LE(n, 75);
    EXPECT_GE(r.output_tokens, 8);
    EXPECT_LE(r.output_tokens, 24);
    input_lengths.insert(n);
  }
  EXPECT_GT(input_lengths.size(), 10u);
}

TEST(Workload, SharedPrefixRequestsReuseTheTenantsSystemPrompts) {
  auto w = make_workload(options(WorkloadKind::kSharedPrefix));
  ASSERT_TRUE(w.is_ok());
  std::set<std::string> systems, users;
  for (const WorkloadRequest& r : w->requests) {
    EXPECT_EQ(word_count(r.system), 200);
    EXPECT_EQ(word_count(r.user), 50);
    systems.insert(r.system);
    users.insert(r.user);
  }
  EXPECT_EQ(systems.size(), 3u);  // every tenant was picked in 20 draws
  EXPECT_EQ(users.size(), 20u);   // every question is its own
}

TEST(Workload, MultiTurnHasConversationsOfTurns) {
  auto w = make_workload(options(WorkloadKind::kMultiTurn));
  ASSERT_TRUE(w.is_ok());
  EXPECT_TRUE(w->requests.empty());
  ASSERT_EQ(w->conversations.size(), 4u);
  EXPECT_EQ(w->total_requests(), 12u);
  for (const Conversation& c : w->conversations) {
    EXPECT_EQ(c.user_turns.size(), 3u);
    EXPECT_EQ(c.output_tokens, (std::vector<int>{16, 16, 16}));
    EXPECT_EQ(word_count(c.system), 200);
  }
  WorkloadOptions o = options(WorkloadKind::kMultiTurn);
  o.prefix_len = -1;  // default for multi-turn: no system prompt
  auto plain = make_workload(o);
  ASSERT_TRUE(plain.is_ok());
  EXPECT_TRUE(plain->conversations[0].system.empty());
}

TEST(Workload, BadOptionsAreErrors) {
  WorkloadOptions o = options(WorkloadKind::kRandom);
  o.input_len = 0;
  EXPECT_FALSE(make_workload(o).is_ok());
  o = options(WorkloadKind::kRandom);
  o.range_ratio = 1.0;
  EXPECT_FALSE(make_workload(o).is_ok());
  o = options(WorkloadKind::kTrace);
  EXPECT_NE(make_workload(o).status().message().find("--trace-file"), std::string::npos);
  o.trace_file = "/nonexistent/trace.jsonl";
  EXPECT_EQ(make_workload(o).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(parse_workload_kind("bursty").is_ok());
  EXPECT_EQ(*parse_workload_kind("shared-prefix"), WorkloadKind::kSharedPrefix);
}

TEST(Trace, ParsesMooncakeLines) {
  const std::string text =
      "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 10, \"hash_ids\": [0, 1]}\n"
      "\n"
      "{\"timestamp\": 27.5, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [0, 2]}\r\n"
      "{\"timestamp\": 40, \"input_length\": 5, \"output_length\": 1}";
  auto entries = parse_trace(text, "t.jsonl");
  ASSERT_TRUE(entries.is_ok()) << entries.status().to_string();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_DOUBLE_EQ((*entries)[1].timestamp_ms, 27.5);
  EXPECT_EQ((*entries)[1].input_length, 600);
  EXPECT_EQ((*entries)[1].output_length, 3);
  EXPECT_EQ((*entries)[1].hash_ids, (std::vector<uint64_t>{0, 2}));
  EXPECT_TRUE((*entries)[2].hash_ids.empty());
}

TEST(Trace, BadLinesNameTheirLineNumber) {
  const std::string good =
      "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 10, \"hash_ids\": [1]}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"timestamp\": 0, \"input_length\": 10", "not valid JSON"},
      {"[1, 2]", "JSON object"},
      {"{\"input_length\": 10, \"output_length\": 1}", "\"timestamp\""},
      {"{\"timestamp\": -1, \"input_length\": 10, \"output_length\": 1}", "\"timestamp\""},
      {"{\"timestamp\": 0, \"input_length\": 0, \"output_length\": 1}", "\"input_length\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": \"5\"}", "\"output_length\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [-1]}",
       "\"hash_ids\""},
      {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": 3}",
       "\"hash_ids\""},
  };
  for (const auto& [line, why] : cases) {
    auto r = parse_trace(good + "\n" + line + "\n" + good, "trace.jsonl");
    ASSERT_FALSE(r.is_ok()) << line;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
    EXPECT_NE(r.status().message().find("trace.jsonl:3: "), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  }
}

TEST(Trace, EqualHashIdsGiveEqualPromptPrefixes) {
  TraceEntry a{0, 1200, 8, {5, 6, 7}};
  TraceEntry b{10, 1300, 8, {5, 6, 9}};
  TraceEntry c{20, 700, 8, {4, 6}};
  const auto wa = words_of(trace_prompt(a, 3, 0));
  const auto wb = words_of(trace_prompt(b, 3, 1));
  const auto wc = words_of(trace_prompt(c, 3, 2));
  ASSERT_EQ(wa.size(), 1200u);
  ASSERT_EQ(wb.size(), 1300u);  // 3 blocks of 512 cut to 1300 words
  ASSERT_EQ(wc.size(), 700u);
  // Blocks 5 and 6 are shared: the first 1024 words agree, block 7 vs 9 then differs.
  EXPECT_TRUE(std::equal(wa.begin(), wa.begin() + 1024, wb.begin()));
  EXPECT_FALSE(std::equal(wa.begin() + 1024, wa.end(), wb.begin() + 1024));
  // Block 6 is the same text in any position.
  EXPECT_TRUE(std::equal(wa.begin() + 512, wa.begin() + 700, wc.begin() + 512));
  EXPECT_FALSE(std::equal(wa.begin(), wa.begin() + 512, wc.begin()));
  // The same line gives the same prompt; padding past the blocks is the line's own.
  EXPECT_EQ(trace_prompt(a, 3, 0), trace_prompt(a, 3, 0));
  TraceEntry long_a = a;
  long_a.input_length = 2000;
  EXPECT_EQ(words_of(trace_prompt(long_a, 3, 0)).size(), 2000u);
  EXPECT_NE(trace_prompt(long_a, 3, 0), trace_prompt(long_a, 3, 1));
  EXPECT_EQ(trace_prompt(long_a, 3, 0).substr(0, 1000), trace_prompt(long_a, 3, 1).substr(0, 1000));
}

TEST(Trace, WorkloadFromFileKeepsTimestampsAndHonoursNumRequests) {
  const auto path = std::filesystem::temp_directory_path() / "infergrid_workload_test.jsonl";
  {
    std::ofstream out(path);
    for (int i = 0; i < 5; ++i) {
      out << "{\"timestamp\": " << i * 100 << ", \"input_length\": 20, \"output_length\": " << i + 1
          << ", \"hash_ids\": [" << i << "]}\n";
    }
  }
  WorkloadOptions o;
  o.kind = WorkloadKind::kTrace;
  o.trace_file = path.string();
  auto all = make_workload(o);
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  ASSERT_EQ(all->requests.size(), 5u);
  EXPECT_DOUBLE_EQ(all->requests[3].trace_time_ms, 300);
  EXPECT_EQ(all->requests[3].output_tokens, 4);
  EXPECT_EQ(word_count(all->requests[3].user), 20);
  o.num_requests = 2;
  auto two = make_workload(o);
  ASSERT_TRUE(two.is_ok());
  EXPECT_EQ(two->requests.size(), 2u);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace infergrid
