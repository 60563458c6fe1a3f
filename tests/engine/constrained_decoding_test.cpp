// Constrained decoding end to end: the default model (a real trained Llama with its real
// vocabulary) sampled at temperature 1 through JSON-schema grammars. Every output must parse and
// validate, judged by an independent validator (python3-jsonschema, tools/validate_json), and
// the constrained path must stay deterministic under batching and preemption.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/scheduler.h"
#include "grammar/grammar_cache.h"
#include "grammar/json_schema.h"
#include "kernels/cpu_backend.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace infergrid {
namespace {

using ordered_json = nlohmann::ordered_json;

const char* const kSchemas[] = {
    R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 130}},
        "required": ["name", "age"], "additionalProperties": false})",
    R"({"type": "array", "items": {"enum": ["red", "green", "blue", 7, null]},
        "minItems": 1, "maxItems": 5})",
    R"({"type": "object", "properties": {
          "order": {"type": "object", "properties": {
              "id": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
              "lines": {"type": "array", "maxItems": 3, "items": {"type": "object",
                  "properties": {"sku": {"type": "string", "maxLength": 8},
                                 "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
                  "required": ["sku", "qty"], "additionalProperties": false}}},
              "required": ["id", "lines"], "additionalProperties": false},
          "note": {"type": "string", "maxLength": 12}},
        "required": ["order"], "additionalProperties": false})",
    R"({"type": "number", "minimum": -5, "maximum": 5})",
    R"({"type": "integer", "exclusiveMinimum": 100, "exclusiveMaximum": 1000})",
    R"({"type": "object", "properties": {
          "when": {"type": "string", "format": "date-time"},
          "day": {"type": "string", "format": "date"},
          "id": {"type": "string", "format": "uuid"}},
        "required": ["when", "day", "id"], "additionalProperties": false})",
    R"({"anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 2, "maxLength": 6},
                  {"type": "array", "items": {"type": "integer", "minimum": -3, "maximum": 3},
                   "maxItems": 4}]})",
    R"({"$defs": {"node": {"type": "object", "properties": {
          "v": {"type": "integer", "minimum": 0, "maximum": 9},
          "kids": {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/node"}}},
          "required": ["v"], "additionalProperties": false}},
        "$ref": "#/$defs/node"})",
    R"({"type": "object", "properties": {"city": {"const": "Paris"},
          "temp": {"type": "number", "minimum": -50, "maximum": 60},
          "unit": {"enum": ["C", "F"]}, "rain": {"type": ["boolean", "null"]}},
        "required": ["city", "unit"], "additionalProperties": false})",
    R"({"type": "object", "properties": {"a": {"type": "integer"},
          "b": {"type": "string", "maxLength": 5},
          "c": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}},
        "additionalProperties": false})",
};

class ConstrainedDecodingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Model::load(INFERGRID_SOURCE_DIR "/models/infergrid-default.gguf");
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto tokenizer = Tokenizer::from_gguf(model_->gguf());
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::move(tokenizer).value();
    grammars_ = std::make_unique<GrammarCache>(*tokenizer_);
  }

  std::shared_ptr<const CompiledGrammar> compile(const char* schema_text) {
    auto gbnf = json_schema_to_gbnf(ordered_json::parse(schema_text));
    EXPECT_TRUE(gbnf.is_ok()) << gbnf.status().to_string() << "\n" << schema_text;
    if (!gbnf.is_ok()) return nullptr;
    auto grammar = grammars_->get(*gbnf);
    EXPECT_TRUE(grammar.is_ok()) << grammar.status().to_string() << "\n" << *gbnf;
    return grammar.is_ok() ? *grammar : nullptr;
  }

  struct Outcome {
    std::string text;
    std::vector<int32_t> tokens;
    FinishReason reason = FinishReason::kNone;
    Status error;
  };

  std::vector<Outcome> run(std::vector<GenerationRequest> requests, int n_blocks) {
    CpuBackend backend(2);
    SchedulerOptions o;
    o.block_size = 16;
    o.n_blocks = n_blocks;
    o.max_batch_tokens = 128;
    o.max_running = 32;
    o.max_context = 1024;
    Scheduler scheduler(*model_, *tokenizer_, backend, o);
    std::vector<Outcome> out(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      Status st = scheduler.add(i + 1, std::move(requests[i]), [&out, i](const RequestEvent& e) {
        out[i].text += e.text;
        for (const GeneratedToken& t : e.tokens) out[i].tokens.push_back(t.token);
        if (e.finished) {
          out[i].reason = e.finish_reason;
          out[i].error = e.error;
        }
      });
      EXPECT_TRUE(st.is_ok()) << st.to_string();
    }
    for (int step = 0; step < 200000 && scheduler.has_work(); ++step) {
      auto r = scheduler.step();
      EXPECT_TRUE(r.is_ok()) << r.status().to_string();
      if (!r.is_ok()) break;
    }
    EXPECT_FALSE(scheduler.has_work());
    return out;
  }

  GenerationRequest request(std::shared_ptr<const CompiledGrammar> grammar, uint64_t seed) const {
    GenerationRequest r;
    r.prompt = tokenizer_->encode("Answer in JSON. The weather in Paris today is", true, false);
    r.options.max_tokens = 700;
    r.options.sampling.temperature = 1.0f;
    r.options.sampling.top_k = 0;
    r.options.sampling.top_p = 1.0f;
    r.options.sampling.min_p = 0.0f;
    r.options.sampling.seed = seed;
    r.options.grammar = std::move(grammar);
    return r;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<GrammarCache> grammars_;
};

TEST_F(ConstrainedDecodingTest, TwoHundredSampledOutputsAllValidateAgainstTheirSchemas) {
  constexpr int kSeedsPerSchema = 20;
  std::vector<GenerationRequest> requests;
  std::vector<const char*> schema_of;
  for (const char* schema : kSchemas) {
    auto grammar = compile(schema);
    ASSERT_NE(grammar, nullptr);
    for (int seed = 0; seed < kSeedsPerSchema; ++seed) {
      requests.push_back(request(grammar, 1000 + static_cast<uint64_t>(seed) * 7919));
      schema_of.push_back(schema);
    }
  }
  ASSERT_EQ(requests.size(), 200u);
  const auto outcomes = run(std::move(requests), 2048);

  const auto cases = std::filesystem::temp_directory_path() /
                     ("infergrid_constrained_" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream f(cases);
    for (size_t i = 0; i < outcomes.size(); ++i) {
      EXPECT_EQ(outcomes[i].reason, FinishReason::kStop)
          << "case " << i + 1
          << " did not end where its grammar does: " << outcomes[i].error.to_string() << " "
          << outcomes[i].text;
      f << nlohmann::json{{"schema", nlohmann::json::parse(schema_of[i])},
                          {"output", outcomes[i].text}}
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
    }
  }
  const std::string command =
      "/usr/bin/python3 " INFERGRID_SOURCE_DIR "/tools/validate_json " + cases.string() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string report;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) report.append(buffer, n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << report;
  EXPECT_NE(report.find("200 of 200 outputs valid"), std::string::npos) << report;
  std::filesystem::remove(cases);
}

TEST_F(ConstrainedDecodingTest, PreemptionAndBatchingGiveTheSameConstrainedText) {
  auto grammar = compile(kSchemas[2]);
  ASSERT_NE(grammar, nullptr);
  std::vector<GenerationRequest> alone, together, preempted;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    together.push_back(request(grammar, seed));
    preempted.push_back(request(grammar, seed));
  }
  std::vector<std::string> reference;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    std::vector<GenerationRequest> one;
    one.push_back(request(grammar, seed));
    reference.push_back(run(std::move(one), 2048)[0].text);
  }
  const auto batched = run(std::move(together), 2048);
  // 12 sequences of up to ~100 tokens in 40 blocks of 16: they preempt one another.
  const auto squeezed = run(std::move(preempted), 40);
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_EQ(batched[i].text, reference[i]) << "seed " << i + 1;
    EXPECT_EQ(squeezed[i].text, reference[i]) << "seed " << i + 1;
    EXPECT_EQ(squeezed[i].reason, FinishReason::kStop);
  }
}

}  // namespace
}  // namespace infergrid

namespace infergrid {
namespace {

// A lazy grammar (tool_choice auto): free text until the trigger shows in the output, however
// the tokens split it, and from the trigger on exactly the grammar; the text before it is the
// model's own, as it would be unconstrained.
TEST_F(ConstrainedDecodingTest, ALazyGrammarConstrainsFromItsTriggerOn) {
  auto grammar = grammars_->get(R"(root ::= " the" [a-z]{0,8} " end")");
  ASSERT_TRUE(grammar.is_ok()) << grammar.status().to_string();
  std::vector<GenerationRequest> lazy, free;
  for (uint64_t seed = 1; seed <= 24; ++seed) {
    GenerationRequest r = request(*grammar, seed);
    r.options.max_tokens = 120;
    r.options.grammar_trigger = " the";
    lazy.push_back(r);
    r.options.grammar = nullptr;
    r.options.grammar_trigger.clear();
    free.push_back(std::move(r));
  }
  const std::vector<Outcome> constrained = run(lazy, 400);
  const std::vector<Outcome> unconstrained = run(free, 400);
  int triggered = 0;
  for (size_t i = 0; i < constrained.size(); ++i) {
    const Outcome& c = constrained[i];
    ASSERT_TRUE(c.error.is_ok()) << c.error.to_string();
    const size_t at = c.text.find(" the");
    if (at == std::string::npos) {
      // Never triggered: the unconstrained text, token for token.
      EXPECT_EQ(c.text, unconstrained[i].text);
      continue;
    }
    ++triggered;
    EXPECT_EQ(c.text.substr(0, at), unconstrained[i].text.substr(0, at)) << c.text;
    const std::string tail = c.text.substr(at);
    EXPECT_EQ(c.reason, FinishReason::kStop) << c.text;
    ASSERT_GE(tail.size(), 8u) << c.text;
    EXPECT_EQ(tail.substr(tail.size() - 4), " end") << c.text;
    for (char ch : tail.substr(4, tail.size() - 8)) EXPECT_TRUE(ch >= 'a' && ch <= 'z') << c.text;
  }
  EXPECT_GE(triggered, 12) << "\" the\" should show in most English outputs";

  // A trigger inside a token whose rest the grammar refuses ("th" then "e" where it wants
  // "Q"): the output goes on free, exactly the unconstrained text, never an error. A token
  // that ends with the trigger (" both") starts the grammar as before.
  auto refusing = grammars_->get(R"(root ::= "th" "Q")");
  ASSERT_TRUE(refusing.is_ok());
  std::vector<GenerationRequest> fallback = lazy;
  for (auto& r : fallback) {
    r.options.grammar = *refusing;
    r.options.grammar_trigger = "th";
  }
  const std::vector<Outcome> free_again = run(fallback, 400);
  int fell_back = 0, followed = 0;
  for (size_t i = 0; i < free_again.size(); ++i) {
    const Outcome& o = free_again[i];
    EXPECT_TRUE(o.error.is_ok()) << o.error.to_string();
    const size_t at = o.text.find("th");
    if (at != std::string::npos && o.text.substr(at) == "thQ") {
      ++followed;
      EXPECT_EQ(o.reason, FinishReason::kStop);
    } else {
      fell_back += at != std::string::npos;
      EXPECT_EQ(o.text, unconstrained[i].text);
    }
  }
  EXPECT_GE(fell_back, 3);
  EXPECT_GE(followed, 3);
}

}  // namespace
}  // namespace infergrid

namespace infergrid {
namespace {

// A request resumed with the tokens an earlier run produced (failover to another instance)
// continues exactly that run: the grammar, the lazy trigger and the seeded random stream are
// where they stood, so the constrained text is the uninterrupted one whatever the cut.
TEST_F(ConstrainedDecodingTest, AResumedRequestContinuesTheConstrainedRunExactly) {
  auto strict = compile(kSchemas[2]);
  ASSERT_NE(strict, nullptr);
  auto lazy = grammars_->get(R"(root ::= " the" [a-z]{0,8} " end")");
  ASSERT_TRUE(lazy.is_ok()) << lazy.status().to_string();
  std::vector<GenerationRequest> originals;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    originals.push_back(request(strict, seed));
    GenerationRequest r = request(*lazy, seed);
    r.options.max_tokens = 120;
    r.options.grammar_trigger = " the";
    originals.push_back(std::move(r));
  }
  const std::vector<Outcome> reference = run(originals, 2048);
  std::vector<GenerationRequest> resumed;
  std::vector<size_t> of;
  for (size_t i = 0; i < reference.size(); ++i) {
    ASSERT_TRUE(reference[i].error.is_ok()) << reference[i].error.to_string();
    const std::vector<int32_t>& tokens = reference[i].tokens;
    for (size_t cut : {size_t{1}, tokens.size() / 3, tokens.size() * 2 / 3}) {
      if (cut == 0 || cut >= tokens.size()) continue;
      GenerationRequest r = originals[i];
      r.resume_tokens.assign(tokens.begin(), tokens.begin() + static_cast<ptrdiff_t>(cut));
      resumed.push_back(std::move(r));
      of.push_back(i);
    }
  }
  ASSERT_GE(resumed.size(), 16u);
  const std::vector<Outcome> continued = run(std::move(resumed), 2048);
  for (size_t k = 0; k < continued.size(); ++k) {
    const Outcome& want = reference[of[k]];
    EXPECT_EQ(continued[k].text, want.text) << "case " << k;
    EXPECT_EQ(continued[k].tokens, want.tokens) << "case " << k;
    EXPECT_EQ(continued[k].reason, want.reason) << "case " << k;
  }
}

}  // namespace
}  // namespace infergrid
