// `infergrid serve` as users run it: a real process on a loopback port, driven by curl.
#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <thread>
#include <tuple>
#include <utility>

#include "golden_required.h"
#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

using nlohmann::json;

class ServerTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> args = {}) {
    ASSERT_FALSE(test_model_path().empty());
    std::string log;
    ASSERT_TRUE(server_.start(test_server_args(std::move(args)), log)) << log;
  }
  std::string url(const std::string& path) const { return server_.url() + path; }
  json metrics_snapshot() {
    auto r = curl(url("/metrics"));
    EXPECT_EQ(r.status, 200);
    json m;
    for (const char* name :
         {"infergrid_request_success_total", "infergrid_kv_blocks_used",
          "infergrid_generation_tokens_total", "infergrid_prompt_tokens_total"}) {
      m[name] = metric(r.body, name).value_or(-1);
    }
    const auto abort_at =
        r.body.find("infergrid_request_finished_total{finished_reason=\"abort\"}");
    m["aborted"] = abort_at == std::string::npos
                       ? 0.0
                       : std::stod(r.body.substr(r.body.find(' ', abort_at) + 1));
    return m;
  }
  ServerProcess server_;
};

TEST_F(ServerTest, CompletionsChatModelsHealthAndMetrics) {
  start();
  auto health = curl(url("/health"));
  EXPECT_EQ(health.status, 200);
  auto models = curl(url("/v1/models"));
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body)["data"][0]["id"], "tiny");

  auto r = curl(url("/v1/completions"),
                R"({"model":"tiny","prompt":"Once upon a time","max_tokens":7,"temperature":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  json c = json::parse(r.body);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c["usage"]["completion_tokens"], 7);
  EXPECT_GT(c["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_TRUE(c["id"].get<std::string>().starts_with("cmpl-"));

  // Greedy is deterministic across requests.
  auto again = curl(url("/v1/completions"),
                    R"({"prompt":"Once upon a time","max_tokens":7,"temperature":0})");
  EXPECT_EQ(json::parse(again.body)["choices"][0]["text"], c["choices"][0]["text"]);
  // A prompt of several 16-token blocks, sent twice: the second is served its full blocks from
  // the prefix cache, and says so.
  std::string story;
  for (int i = 0; i < 12; ++i) story += "Once upon a time there was a cache. ";
  const std::string story_body =
      json{{"prompt", story}, {"max_tokens", 2}, {"temperature", 0}}.dump();
  ASSERT_EQ(curl(url("/v1/completions"), story_body).status, 200);
  const json story_again = json::parse(curl(url("/v1/completions"), story_body).body);
  const int story_prompt = story_again["usage"]["prompt_tokens"].get<int>();
  const int story_cached =
      story_again["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  ASSERT_GT(story_prompt, 48);
  EXPECT_GE(story_cached, (story_prompt - 1) / 16 * 16) << story_again.dump();
  EXPECT_LE(story_cached, story_prompt);

  auto chat = curl(url("/v1/chat/completions"),
                   R"({"messages":[{"role":"system","content":"Be brief."},
                                   {"role":"user","content":"Hello!"}],
                       "max_completion_tokens":5,"temperature":0.7,"seed":5,
                       "logprobs":true,"top_logprobs":2})");
  ASSERT_EQ(chat.status, 200) << chat.body;
  json cc = json::parse(chat.body);
  EXPECT_EQ(cc["object"], "chat.completion");
  EXPECT_EQ(cc["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(cc["usage"]["completion_tokens"], 5);
  ASSERT_EQ(cc["choices"][0]["logprobs"]["content"].size(), 5u);
  EXPECT_EQ(cc["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);

  auto m = metrics_snapshot();
  EXPECT_EQ(m["infergrid_request_success_total"], 5);  // 2 + the story twice + the chat
  EXPECT_EQ(m["infergrid_generation_tokens_total"], 7 + 7 + 2 + 2 + 5);
  EXPECT_EQ(m["infergrid_kv_blocks_used"], 0);
}

// --kv-cache-type: one --kv-cache-bytes budget holds twice the blocks at f16 (the default) as
// at f32, each block half the bytes, and both serve a completion.
TEST_F(ServerTest, KvCacheTypeSetsTheBlocksOneBudgetHolds) {
  std::map<std::string, std::pair<double, double>> blocks_and_bytes;
  for (const std::string kv_type : {"f16", "f32"}) {
    ServerProcess server;
    std::string log;
    ASSERT_TRUE(server.start(test_server_args({"--kv-cache-type", kv_type}), log)) << log;
    const std::string body =
        json{{"prompt", "Tell me about caches"}, {"max_tokens", 4}, {"temperature", 0}}.dump();
    auto r = curl(server.url() + "/v1/completions", body);
    EXPECT_EQ(r.status, 200) << kv_type << ": " << r.body;
    auto m = curl(server.url() + "/metrics");
    ASSERT_EQ(m.status, 200);
    blocks_and_bytes[kv_type] = {metric(m.body, "infergrid_kv_blocks_total").value_or(0),
                                 metric(m.body, "infergrid_kv_block_bytes").value_or(0)};
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait(std::chrono::seconds(20)), 0);
  }
  const auto [f16_blocks, f16_bytes] = blocks_and_bytes["f16"];
  const auto [f32_blocks, f32_bytes] = blocks_and_bytes["f32"];
  EXPECT_GT(f32_blocks, 0);
  EXPECT_EQ(f16_bytes * 2, f32_bytes);
  EXPECT_NEAR(f16_blocks, 2 * f32_blocks, 1);
}

// Two models from one process (`--model A --model B`), each with its own engine: each answers
// its own name with what a server of that model alone answers, a request without a model goes
// to the first, an unknown name is a 404 naming both, and /v1/models lists both.
TEST_F(ServerTest, TwoModelsFromOneProcessEachAnswerTheirOwnName) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_two_models_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string other = (dir / "qwen.gguf").string();
  SynthOptions o;
  o.arch = "qwen2";
  o.size = "1m";
  o.type = TensorType::kQ4_0;
  o.seed = 99;
  ASSERT_TRUE(synthesize_model(o, other, 2).is_ok());
  const std::vector<std::string> common = {"--threads", "1", "--kv-cache-bytes", "32MiB"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), common.begin(), common.end());
    return args;
  };
  ServerProcess both, alone_a, alone_b;
  std::string log;
  ASSERT_TRUE(both.start(
      with({"--model", test_model_path(), "--model", other, "--served-model-name", "alpha",
            "--served-model-name", "../beta", "--kv-disk-dir", (dir / "disk").string()}),
      log))
      << log;
  // Each model's SSD tier in its own subdirectory, inside the one given, whatever its name.
  EXPECT_TRUE(std::filesystem::is_directory(dir / "disk" / "0-alpha"));
  EXPECT_TRUE(std::filesystem::is_directory(dir / "disk" / "1-___beta"));
  ASSERT_TRUE(alone_a.start(with({"--model", test_model_path()}), log)) << log;
  ASSERT_TRUE(alone_b.start(with({"--model", other}), log)) << log;

  const auto complete = [](const ServerProcess& server, const char* model) {
    json body = {{"prompt", "The two engines"}, {"max_tokens", 12}, {"temperature", 0}};
    if (model != nullptr) body["model"] = model;
    return curl(server.url() + "/v1/completions", body.dump());
  };
  const auto text_of = [](const HttpResult& r) {
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body)["choices"][0]["text"].get<std::string>()
                           : std::string();
  };
  const std::string want_a = text_of(complete(alone_a, nullptr));
  const std::string want_b = text_of(complete(alone_b, nullptr));
  ASSERT_NE(want_a, want_b) << "the two models must differ for this test to mean anything";
  const HttpResult alpha = complete(both, "alpha");
  EXPECT_EQ(text_of(alpha), want_a);
  EXPECT_EQ(json::parse(alpha.body)["model"], "alpha");
  const HttpResult beta = complete(both, "../beta");
  EXPECT_EQ(text_of(beta), want_b);
  EXPECT_EQ(json::parse(beta.body)["model"], "../beta");
  EXPECT_EQ(text_of(complete(both, nullptr)), want_a);  // no model: the first

  const HttpResult unknown = complete(both, "gamma");
  EXPECT_EQ(unknown.status, 404);
  const json error = json::parse(unknown.body)["error"];
  EXPECT_EQ(error["code"], "model_not_found");
  EXPECT_NE(error["message"].get<std::string>().find("alpha, ../beta"), std::string::npos)
      << error.dump();

  const json models = json::parse(curl(both.url() + "/v1/models").body);
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][0]["id"], "alpha");
  EXPECT_EQ(models["data"][1]["id"], "../beta");
  // The metrics count the requests and the KV blocks of both engines (each its own pool).
  const std::string m = curl(both.url() + "/metrics").body;
  EXPECT_EQ(metric(m, "infergrid_request_success_total"), 3);
  const auto kv_bytes = [](const std::string& metrics) {
    return metric(metrics, "infergrid_kv_blocks_total").value_or(0) *
           metric(metrics, "infergrid_kv_block_bytes").value_or(0);
  };
  const std::string ma = curl(alone_a.url() + "/metrics").body;
  const std::string mb = curl(alone_b.url() + "/metrics").body;
  EXPECT_EQ(metric(m, "infergrid_kv_blocks_total"),
            metric(ma, "infergrid_kv_blocks_total").value_or(0) +
                metric(mb, "infergrid_kv_blocks_total").value_or(0));
  EXPECT_NEAR(kv_bytes(m), kv_bytes(ma) + kv_bytes(mb), 0.001 * kv_bytes(m));
  for (ServerProcess* s : {&both, &alone_a, &alone_b}) {
    s->signal(SIGTERM);
    EXPECT_EQ(s->wait(std::chrono::seconds(20)), 0);
  }
  std::filesystem::remove_all(dir);
}

// A mixture-of-experts model served: /metrics counts the tokens routed to each expert of each
// layer (every token picks n_expert_used experts per layer, so the sum is known exactly).
TEST(Server, MetricsCountExpertActivationsOfAMixtureOfExperts) {
  const std::string model =
      std::string(INFERGRID_SHARED_DIR) + "/golden/models/tiny-qwen3moe-q8_0.gguf";
  if (!std::filesystem::exists(model)) IG_GOLDEN_MISSING("../shared/golden not present");
  ServerProcess server;
  std::string log;
  ASSERT_TRUE(server.start({"--model", model, "--served-model-name", "moe", "--threads", "1",
                            "--kv-cache-bytes", "16MiB"},
                           log))
      << log;
  const json body = {{"prompt", "experts"}, {"max_tokens", 6}, {"temperature", 0}};
  const HttpResult r = curl(server.url() + "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json usage = json::parse(r.body)["usage"];
  const std::string m = curl(server.url() + "/metrics").body;
  // Tokens through the model: the prompt and every generated token but the last.
  const int computed =
      usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>() - 1;
  double total = 0;
  int series = 0;
  const std::string prefix = "infergrid_expert_activations_total{model=\"moe\",layer=\"";
  for (size_t at = m.find(prefix); at != std::string::npos; at = m.find(prefix, at + 1)) {
    total += std::stod(m.substr(m.find('}', at) + 2));
    ++series;
  }
  EXPECT_EQ(series, 2 * 8) << m;              // 2 layers x 8 experts
  EXPECT_EQ(total, 2.0 * 2 * computed) << m;  // 2 layers x 2 experts per token
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(std::chrono::seconds(20)), 0);
}

// llama-server's /tokenize, /detokenize and /apply-template: text to ids and back is the identity,
// pieces spell the text, and bad bodies get a 400 naming the field.
TEST_F(ServerTest, TokenizeDetokenizeAndApplyTemplate) {
  start();
  const std::string text = "Hello world, tokenize me: 1234 \xC3\xA9t\xC3\xA9";
  auto tok = curl(url("/tokenize"), json{{"content", text}}.dump());
  ASSERT_EQ(tok.status, 200) << tok.body;
  const json ids = json::parse(tok.body)["tokens"];
  ASSERT_GT(ids.size(), 3u);
  auto detok = curl(url("/detokenize"), json{{"tokens", ids}}.dump());
  ASSERT_EQ(detok.status, 200) << detok.body;
  EXPECT_EQ(json::parse(detok.body)["content"], text);

  auto pieces = curl(url("/tokenize"), json{{"content", text}, {"with_pieces", true}}.dump());
  ASSERT_EQ(pieces.status, 200) << pieces.body;
  std::string spelled;
  const json piece_list = json::parse(pieces.body)["tokens"];
  for (const json& p : piece_list) {
    if (p["piece"].is_string()) {
      spelled += p["piece"].get<std::string>();
    } else {
      for (const json& b : p["piece"]) spelled += static_cast<char>(b.get<int>());
    }
  }
  EXPECT_EQ(spelled, text);
  auto with_bos = curl(url("/tokenize"), json{{"content", text}, {"add_special", true}}.dump());
  EXPECT_GE(json::parse(with_bos.body)["tokens"].size(), ids.size());

  const auto error_param = [&](const std::string& path, const json& body) {
    auto r = curl(url(path), body.dump());
    EXPECT_EQ(r.status, 400) << r.body;
    return json::parse(r.body)["error"]["param"];
  };
  EXPECT_EQ(error_param("/tokenize", json{{"text", "x"}}), "content");
  EXPECT_EQ(error_param("/tokenize", json{{"content", "x"}, {"add_special", "yes"}}),
            "add_special");
  EXPECT_EQ(error_param("/detokenize", json{{"tokens", {1, -5}}}), "tokens");
  EXPECT_EQ(error_param("/detokenize", json{{"tokens", {99999999}}}), "tokens");
  EXPECT_EQ(curl(url("/tokenize")).status, 405);
  EXPECT_EQ(curl(url("/tokenize"), json{{"content", "x"}, {"model", "nope"}}.dump()).status, 404);

  // /apply-template gives the text a chat completion runs: tokenized with its BOS it is
  // exactly the completion's prompt.
  const json messages = {{{"role", "system"}, {"content", "Be brief."}},
                         {{"role", "user"}, {"content", "What is a KV cache?"}}};
  auto applied = curl(url("/apply-template"), json{{"messages", messages}}.dump());
  ASSERT_EQ(applied.status, 200) << applied.body;
  const std::string prompt = json::parse(applied.body)["prompt"];
  EXPECT_NE(prompt.find("What is a KV cache?"), std::string::npos) << prompt;
  const auto n_tokens =
      json::parse(curl(url("/tokenize"), json{{"content", prompt}, {"add_special", true}}.dump())
                      .body)["tokens"]
          .size();
  auto chat =
      curl(url("/v1/chat/completions"), json{{"messages", messages}, {"max_tokens", 1}}.dump());
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(json::parse(chat.body)["usage"]["prompt_tokens"], n_tokens);
  EXPECT_EQ(error_param("/apply-template", json{{"messages", "hi"}}), "messages");
}

// A template given as a Jinja file is what chat requests render through, its own errors
// included: Gemma 2's template refuses a system turn, and the client gets that as a 400.
TEST_F(ServerTest, ChatTemplateFileRendersAsJinjaAndItsErrorsAre400) {
  const auto file = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden" / "chat-templates" /
                    "google-gemma-2-2b-it.jinja";
  if (!std::filesystem::exists(file)) IG_GOLDEN_MISSING("no golden chat template " << file);
  start({"--chat-template-file", file.string()});
  auto applied = curl(url("/apply-template"),
                      json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}}.dump());
  ASSERT_EQ(applied.status, 200) << applied.body;
  EXPECT_EQ(json::parse(applied.body)["prompt"],
            "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  const json with_system = {{{"role", "system"}, {"content", "Be brief."}},
                            {{"role", "user"}, {"content", "Hi"}}};
  auto refused =
      curl(url("/v1/chat/completions"), json{{"messages", with_system}, {"max_tokens", 1}}.dump());
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(json::parse(refused.body)["error"]["message"], "System role not supported");
  EXPECT_EQ(curl(url("/health")).status, 200);
}

TEST_F(ServerTest, ChatTemplateFileThatDoesNotParseStopsTheServer) {
  const auto file = std::filesystem::temp_directory_path() / "infergrid-bad-template.jinja";
  std::ofstream(file) << "{% for m in messages %}{{ m.content }}";
  ServerProcess bad;
  std::string log;
  EXPECT_FALSE(bad.start(test_server_args({"--chat-template-file", file.string()}), log));
  EXPECT_NE(log.find("missing {% endfor %}"), std::string::npos) << log;
  std::filesystem::remove(file);
}

TEST_F(ServerTest, StreamingSendsSseChunksUsageAndDone) {
  start();
  auto r = curl(url("/v1/chat/completions"),
                R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":6,"stream":true,
                    "stream_options":{"include_usage":true},"temperature":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.headers.find("text/event-stream"), std::string::npos);
  std::vector<json> events;
  size_t at = 0;
  bool done = false;
  while ((at = r.body.find("data: ", at)) != std::string::npos) {
    const size_t end = r.body.find("\n\n", at);
    const std::string payload = r.body.substr(at + 6, end - at - 6);
    if (payload == "[DONE]") {
      done = true;
    } else {
      events.push_back(json::parse(payload));
    }
    at = end;
  }
  ASSERT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(events.back()["choices"].empty());
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], 6);

  auto plain = curl(url("/v1/completions"),
                    R"({"prompt":"Hi","max_tokens":4,"stream":true,"temperature":0})");
  ASSERT_EQ(plain.status, 200);
  EXPECT_NE(plain.body.find("\"object\":\"text_completion\""), std::string::npos);
  EXPECT_NE(plain.body.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(plain.body.find("\"usage\""), std::string::npos);  // not asked for
}

// A person as the schema below defines one; what a client would check after parsing.
void expect_person(const std::string& text) {
  json person = json::parse(text, nullptr, false);
  ASSERT_FALSE(person.is_discarded()) << text;
  ASSERT_TRUE(person.is_object()) << text;
  ASSERT_TRUE(person["name"].is_string()) << text;
  EXPECT_LE(person["name"].get<std::string>().size(), 4u * 10) << text;  // 10 code points
  ASSERT_TRUE(person["age"].is_number_integer()) << text;
  EXPECT_GE(person["age"].get<int>(), 0) << text;
  EXPECT_LE(person["age"].get<int>(), 120) << text;
  ASSERT_TRUE(person["pets"].is_array()) << text;
  EXPECT_LE(person["pets"].size(), 2u) << text;
  for (const json& pet : person["pets"]) {
    EXPECT_TRUE(pet == "cat" || pet == "dog") << text;
  }
  EXPECT_EQ(person.size(), 3u) << text;
  EXPECT_LT(text.find("\"name\""), text.find("\"age\"")) << "declared order: " << text;
}

TEST_F(ServerTest, StructuredOutputFollowsTheSchemaStreamedOrNot) {
  start();
  // ordered_json: the request lists the properties as a client would, name first.
  const nlohmann::ordered_json schema =
      nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":10},
      "age":{"type":"integer","minimum":0,"maximum":120},
      "pets":{"type":"array","items":{"enum":["cat","dog"]},"maxItems":2}},
      "required":["name","age","pets"],"additionalProperties":false})");
  for (int seed = 1; seed <= 4; ++seed) {
    nlohmann::ordered_json body = {
        {"messages", {{{"role", "user"}, {"content", "Describe a person"}}}},
        {"max_tokens", 400},
        {"seed", seed},
        {"response_format",
         {{"type", "json_schema"},
          {"json_schema", {{"name", "person"}, {"strict", true}, {"schema", schema}}}}}};
    auto r = curl(url("/v1/chat/completions"), body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    json reply = json::parse(r.body);
    EXPECT_EQ(reply["choices"][0]["finish_reason"], "stop") << r.body;
    expect_person(reply["choices"][0]["message"]["content"].get<std::string>());

    body["stream"] = true;
    auto streamed = curl(url("/v1/chat/completions"), body.dump());
    ASSERT_EQ(streamed.status, 200) << streamed.body;
    std::string content;
    for (size_t at = 0; (at = streamed.body.find("data: {", at)) != std::string::npos;) {
      const size_t end = streamed.body.find("\n\n", at);
      json chunk = json::parse(streamed.body.substr(at + 6, end - at - 6));
      if (!chunk["choices"].empty()) {
        content += chunk["choices"][0]["delta"].value("content", "");
      }
      at = end;
    }
    // The same seed gives the same text, streamed or not.
    EXPECT_EQ(content, reply["choices"][0]["message"]["content"]) << streamed.body;
  }

  // llama-server's fields on the completions endpoint.
  auto yes_no =
      curl(url("/v1/completions"),
           R"({"prompt":"Is it?","max_tokens":20,"grammar":"root ::= (\"yes\" | \"no\") \"!\""})");
  ASSERT_EQ(yes_no.status, 200) << yes_no.body;
  const std::string answer = json::parse(yes_no.body)["choices"][0]["text"];
  EXPECT_TRUE(answer == "yes!" || answer == "no!") << answer;
  auto number = curl(
      url("/v1/completions"),
      R"({"prompt":"n","max_tokens":30,"json_schema":{"type":"integer","minimum":-9,"maximum":9}})");
  ASSERT_EQ(number.status, 200) << number.body;
  json value = json::parse(json::parse(number.body)["choices"][0]["text"].get<std::string>());
  ASSERT_TRUE(value.is_number_integer()) << number.body;
  EXPECT_LE(std::abs(value.get<int>()), 9);

  // What cannot be enforced is a 400 naming the field and the construct, never a crash.
  const std::vector<std::tuple<std::string, std::string, std::string>> refused = {
      {R"({"prompt":"x","grammar":"root ::= missing"})", "grammar", "missing"},
      {R"({"prompt":"x","grammar":"root ::= root \"a\""})", "grammar", "'root'"},
      {R"({"prompt":"x","json_schema":{"type":"string","pattern":"(?<=a)b"}})", "json_schema",
       "lookaround"},
      {R"({"prompt":"x","json_schema":{"if":{"type":"string"}}})", "json_schema", "'if'"},
      {R"({"prompt":"x","ignore_eos":true,"response_format":{"type":"json_object"}})", "ignore_eos",
       "ignore_eos"},
  };
  for (const auto& [request, param, mentions] : refused) {
    auto r = curl(url("/v1/completions"), request);
    EXPECT_EQ(r.status, 400) << request << " -> " << r.body;
    json e = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << r.body;
    EXPECT_EQ(e["error"]["param"], param) << r.body;
    EXPECT_NE(e["error"]["message"].get<std::string>().find(mentions), std::string::npos) << r.body;
  }
  EXPECT_EQ(curl(url("/health")).status, 200);
}

// SSE events of a stream, parsed ("data: [DONE]" excluded).
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  for (size_t at = 0; (at = body.find("data: {", at)) != std::string::npos;) {
    const size_t end = body.find("\n\n", at);
    out.push_back(json::parse(body.substr(at + 6, end - at - 6)));
    at = end;
  }
  return out;
}

// A forced call: message.tool_calls with arguments that validate against the tool's schema,
// the same seed streamed giving deltas that reassemble to the same call; the tool's result
// sent back renders through the template and gets an answer.
TEST_F(ServerTest, ToolCallsFollowTheToolsSchemaStreamedOrNot) {
  start();
  const nlohmann::ordered_json tools = nlohmann::ordered_json::parse(R"([
    {"type":"function","function":{"name":"get_weather","description":"Weather of a city",
     "parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":12},
     "unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}}},
    {"type":"function","function":{"name":"get_time","parameters":{"type":"object",
     "properties":{"zone":{"type":"string","maxLength":6}},"required":["zone"]}}}])");
  for (int seed = 1; seed <= 3; ++seed) {
    nlohmann::ordered_json body = {
        {"messages", {{{"role", "user"}, {"content", "What is the weather in Oslo?"}}}},
        {"tools", tools},
        {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
        {"parallel_tool_calls", false},
        {"max_tokens", 200},
        {"seed", seed}};
    auto r = curl(url("/v1/chat/completions"), body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json choice = json::parse(r.body)["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << r.body;
    ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << r.body;
    const json call = choice["message"]["tool_calls"][0];
    EXPECT_TRUE(choice["message"]["content"].is_null()) << r.body;
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
    EXPECT_EQ(call["function"]["name"], "get_weather");
    const json args = json::parse(call["function"]["arguments"].get<std::string>());
    ASSERT_TRUE(args.is_object()) << r.body;
    EXPECT_EQ(args.size(), 2u) << args;
    const std::string city = args["city"];
    // maxLength counts characters, not bytes.
    EXPECT_LE(std::count_if(city.begin(), city.end(), [](char c) { return (c & 0xC0) != 0x80; }),
              12)
        << city;
    EXPECT_TRUE(args["unit"] == "c" || args["unit"] == "f") << args;

    body["stream"] = true;
    auto streamed = curl(url("/v1/chat/completions"), body.dump());
    ASSERT_EQ(streamed.status, 200) << streamed.body;
    std::string name, arguments, finish;
    int headers = 0;
    for (const json& event : sse_events(streamed.body)) {
      if (event["choices"].empty()) continue;
      const json& c = event["choices"][0];
      if (c["finish_reason"].is_string()) finish = c["finish_reason"];
      if (!c["delta"].contains("tool_calls")) continue;
      for (const json& d : c["delta"]["tool_calls"]) {
        EXPECT_EQ(d["index"], 0);
        if (d.contains("id")) {
          ++headers;
          name = d["function"]["name"];
        }
        arguments += d["function"]["arguments"].get<std::string>();
      }
    }
    EXPECT_EQ(headers, 1) << streamed.body;
    EXPECT_EQ(name, "get_weather");
    EXPECT_EQ(arguments, call["function"]["arguments"]) << streamed.body;
    EXPECT_EQ(finish, "tool_calls");

    // The call and its result go back; the answer is free text (tool_choice auto).
    nlohmann::ordered_json next = {
        {"messages",
         {{{"role", "user"}, {"content", "What is the weather in Oslo?"}},
          {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", {call}}},
          {{"role", "tool"}, {"tool_call_id", call["id"]}, {"content", "4 degrees"}}}},
        {"tools", tools},
        {"max_tokens", 20},
        {"seed", seed}};
    auto answer = curl(url("/v1/chat/completions"), next.dump());
    ASSERT_EQ(answer.status, 200) << answer.body;
    auto prompt = curl(url("/apply-template"), next.dump());
    ASSERT_EQ(prompt.status, 200) << prompt.body;
    const std::string text = json::parse(prompt.body)["prompt"];
    EXPECT_NE(text.find("<tools>"), std::string::npos) << text;
    EXPECT_NE(text.find("<tool_response>\n4 degrees\n</tool_response>"), std::string::npos) << text;
  }
}

// n choices: one prompt, n generations with their own seeds; the first is the n = 1 answer of
// the same seed, usage counts the prompt once and the choices' tokens together.
TEST_F(ServerTest, NChoicesShareThePromptAndEachHasItsOwnSeed) {
  start();
  const std::string prompt = R"("messages":[{"role":"user","content":"Tell me a story about a )"
                             R"(lighthouse keeper and the sea, in a few words."}])";
  auto one = curl(url("/v1/chat/completions"),
                  "{" + prompt + R"(,"max_tokens":24,"seed":11,"temperature":1})");
  ASSERT_EQ(one.status, 200) << one.body;
  auto three = curl(url("/v1/chat/completions"),
                    "{" + prompt + R"(,"max_tokens":24,"seed":11,"temperature":1,"n":3})");
  ASSERT_EQ(three.status, 200) << three.body;
  const json a = json::parse(one.body), b = json::parse(three.body);
  ASSERT_EQ(b["choices"].size(), 3u) << three.body;
  std::set<std::string> texts;
  int completion = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b["choices"][i]["index"], i);
    texts.insert(b["choices"][i]["message"]["content"].get<std::string>());
  }
  EXPECT_EQ(b["choices"][0]["message"]["content"], a["choices"][0]["message"]["content"]);
  EXPECT_EQ(texts.size(), 3u) << three.body;  // their own seed streams
  for (const json& c : b["choices"]) completion += c["finish_reason"] == "length" ? 24 : 0;
  EXPECT_EQ(b["usage"]["prompt_tokens"], a["usage"]["prompt_tokens"]);
  if (completion == 72) {
    EXPECT_EQ(b["usage"]["completion_tokens"], 72);
  }
  // The second request found the prompt's full blocks cached by the first.
  EXPECT_GT(b["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << three.body;

  // Streamed: every choice has its own index, role chunk and finish, then one usage.
  auto streamed = curl(url("/v1/chat/completions"),
                       "{" + prompt +
                           R"(,"max_tokens":24,"seed":11,"temperature":1,"n":3,"stream":true,)"
                           R"("stream_options":{"include_usage":true}})");
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  std::vector<std::string> content(3);
  std::vector<int> finishes(3, 0), roles(3, 0);
  int usages = 0;
  for (const json& event : sse_events(streamed.body)) {
    if (event["choices"].empty()) {
      ++usages;
      EXPECT_EQ(event["usage"]["completion_tokens"], b["usage"]["completion_tokens"]);
      continue;
    }
    const json& c = event["choices"][0];
    const int i = c["index"];
    ASSERT_TRUE(i >= 0 && i < 3) << event;
    content[static_cast<size_t>(i)] += c["delta"].value("content", "");
    if (c["delta"].contains("role")) ++roles[static_cast<size_t>(i)];
    if (c["finish_reason"].is_string()) ++finishes[static_cast<size_t>(i)];
  }
  EXPECT_EQ(usages, 1);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(roles[i], 1);
    EXPECT_EQ(finishes[i], 1);
    EXPECT_EQ(content[i], b["choices"][i]["message"]["content"]) << i;
  }
}

TEST_F(ServerTest, BadInputGetsOpenAiErrors) {
  start({"--ctx-size", "512"});
  struct Case {
    std::string path, body;
    int status;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"/v1/completions", "{not json", 400, ""},
      {"/v1/completions", "[1,2]", 400, ""},
      {"/v1/completions", R"({"max_tokens":3})", 400, "prompt"},
      {"/v1/completions", R"({"prompt":"x","max_tokens":"many"})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt":"x","temperature":"hot"})", 400, "temperature"},
      {"/v1/completions", R"({"prompt":"x","temperature":9})", 400, "temperature"},
      {"/v1/completions", R"({"prompt":"x","n":99})", 400, "n"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"bad name"}}]})",
       400, "tools"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}})",
       400, "tool_choice"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"not":{}}}}}}],"tool_choice":"required"})",
       400, "tools"},
      {"/v1/completions", R"({"prompt":"x","stop":[1]})", 400, "stop"},
      {"/v1/completions", R"({"prompt":"x","stream":"yes"})", 400, "stream"},
      {"/v1/completions", R"({"prompt":["a","b"]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt":"x","model":"gpt-4"})", 404, "model"},
      {"/v1/chat/completions", R"({"messages":"hi"})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages":[{"role":"wizard","content":"x"}]})", 400,
       "messages"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":5}]})", 400,
       "messages[0].content"},
      {"/v1/nothing", R"({})", 404, ""},
  };
  for (const Case& c : cases) {
    auto r = curl(url(c.path), c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    json e = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << r.body;
    EXPECT_TRUE(e["error"]["message"].is_string()) << r.body;
    EXPECT_TRUE(e["error"]["type"].is_string()) << r.body;
    if (!c.param.empty()) {
      EXPECT_EQ(e["error"]["param"], c.param) << r.body;
    }
  }
  // A prompt longer than the context (512 tokens for the test model).
  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += "word ";
  auto too_long = curl(url("/v1/completions"), json{{"prompt", long_prompt}}.dump());
  EXPECT_EQ(too_long.status, 400);
  EXPECT_EQ(json::parse(too_long.body)["error"]["code"], "context_length_exceeded");
  // A body over the limit.
  auto huge = curl(url("/v1/completions"), json{{"prompt", std::string(9 << 20, 'a')}}.dump());
  EXPECT_EQ(huge.status, 413);
  // Wrong method.
  EXPECT_EQ(curl(url("/v1/completions")).status, 405);
  // The server is still healthy and serving.
  EXPECT_EQ(curl(url("/health")).status, 200);
  EXPECT_EQ(curl(url("/v1/completions"), R"({"prompt":"ok","max_tokens":2})").status, 200);
}

TEST_F(ServerTest, QueueFullIsRejectedWith429AndRetryAfter) {
  start({"--max-running", "1", "--max-queued", "1"});
  const std::string slow = R"({"prompt":"busy","max_tokens":400,"ignore_eos":true})";
  std::vector<std::future<HttpResult>> inflight;
  for (int i = 0; i < 6; ++i) {
    inflight.push_back(
        std::async(std::launch::async, [&] { return curl(url("/v1/completions"), slow); }));
  }
  int ok = 0, rejected = 0;
  for (auto& f : inflight) {
    HttpResult r = f.get();
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++rejected;
      EXPECT_NE(r.headers.find("Retry-After"), std::string::npos) << r.headers;
      EXPECT_EQ(json::parse(r.body)["error"]["type"], "rate_limit_error");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(rejected, 1);
  EXPECT_EQ(ok + rejected, 6);
}

TEST_F(ServerTest, ClientDisconnectCancelsAndFreesKv) {
  start();
  // curl gives up after 0.5 s of a generation that would take far longer.
  auto r = curl(url("/v1/completions"),
                R"({"prompt":"tell me everything","max_tokens":16000,"ignore_eos":true,
                    "stream":true})",
                "--max-time 0.5");
  EXPECT_EQ(r.status, 200);  // headers arrived, then the client left
  json m;
  for (int i = 0; i < 100; ++i) {
    m = metrics_snapshot();
    if (m["aborted"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(m["aborted"], 1);
  EXPECT_EQ(m["infergrid_kv_blocks_used"], 0);
  // Non-streaming requests are cancelled too.
  curl(url("/v1/completions"), R"({"prompt":"again","max_tokens":16000,"ignore_eos":true})",
       "--max-time 0.5");
  for (int i = 0; i < 100; ++i) {
    m = metrics_snapshot();
    if (m["aborted"] == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(m["aborted"], 2);
  EXPECT_EQ(m["infergrid_kv_blocks_used"], 0);
}

TEST_F(ServerTest, SigtermFinishesInFlightRequestsThenExitsZero) {
  start({"--shutdown-grace-ms", "20000"});
  auto inflight = std::async(std::launch::async, [&] {
    return curl(url("/v1/completions"), R"({"prompt":"last words","max_tokens":4000,
                                             "ignore_eos":true})");
  });
  const auto running = [&] {
    return metric(curl(url("/metrics")).body, "infergrid_num_requests_running").value_or(0) == 1;
  };
  for (int i = 0; i < 500 && !running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(running());
  server_.signal(SIGTERM);
  // While the request drains, the server takes nothing new.
  bool refused = false;
  for (int i = 0; i < 250 && !refused; ++i) {
    refused = curl(url("/health")).status != 200;
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(refused) << "the server still answered /health after SIGTERM";
  EXPECT_EQ(inflight.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the request ended before the refusal was seen: the check saw no drain";
  HttpResult r = inflight.get();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 4000);
  EXPECT_EQ(server_.wait(std::chrono::seconds(20)), 0);
}

TEST_F(ServerTest, DiskTierKeepsConversationsAcrossARestart) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_server_disk_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string history;
  for (int i = 0; i < 40; ++i) history += "The quick brown fox jumps over the lazy dog. ";
  const std::string body = json{{"prompt", history}, {"max_tokens", 4}, {"temperature", 0}}.dump();
  start({"--kv-disk-dir", dir.string()});
  auto first = curl(url("/v1/completions"), body);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(json::parse(first.body)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  server_.signal(SIGTERM);
  ASSERT_EQ(server_.wait(std::chrono::seconds(20)), 0);

  ServerProcess restarted;
  std::string log;
  ASSERT_TRUE(restarted.start({"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes",
                               "64MiB", "--kv-disk-dir", dir.string()},
                              log))
      << log;
  auto again = curl(restarted.url() + "/v1/completions", body);
  ASSERT_EQ(again.status, 200) << again.body;
  const json a = json::parse(again.body);
  EXPECT_GT(a["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 100);
  EXPECT_EQ(a["choices"][0]["text"], json::parse(first.body)["choices"][0]["text"]);
  auto m = curl(restarted.url() + "/metrics");
  EXPECT_GT(metric(m.body, "infergrid_kv_tier_hit_tokens_total").value_or(0), 100);
  restarted.signal(SIGKILL);  // it may still be writing blocks into the directory
  restarted.wait(std::chrono::seconds(5));
  std::filesystem::remove_all(dir);
}

// int8 tiers: a restarted server is served the history from its int8 SSD tier, whatever its KV
// cache type (int8 blocks do not depend on it); a server of the native codec on the same
// directory never reads those blocks.
TEST_F(ServerTest, Int8DiskTierServesAfterARestartAndNeverMixesWithNative) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_server_int8_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::string history;
  for (int i = 0; i < 40; ++i) history += "The quick brown fox jumps over the lazy dog. ";
  const std::string body = json{{"prompt", history}, {"max_tokens", 4}, {"temperature", 0}}.dump();
  start({"--kv-disk-dir", dir.string(), "--kv-tier-codec", "int8"});
  auto first = curl(url("/v1/completions"), body);
  ASSERT_EQ(first.status, 200) << first.body;
  server_.signal(SIGTERM);
  ASSERT_EQ(server_.wait(std::chrono::seconds(20)), 0);
  auto restart_with = [&](const std::string& codec, const std::string& kv_cache_type) {
    auto server = std::make_unique<ServerProcess>();
    std::string log;
    EXPECT_TRUE(server->start(
        {"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes", "64MiB",
         "--kv-disk-dir", dir.string(), "--kv-tier-codec", codec, "--kv-cache-type", kv_cache_type},
        log))
        << log;
    auto r = curl(server->url() + "/v1/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    const int cached = json::parse(r.body)["usage"]["prompt_tokens_details"]["cached_tokens"];
    server->signal(SIGTERM);
    EXPECT_EQ(server->wait(std::chrono::seconds(20)), 0);
    return cached;
  };
  EXPECT_GT(restart_with("int8", "f16"), 100);
  EXPECT_GT(restart_with("int8", "f32"), 100);
  // Native blocks are another layout: the int8 files are not read (and are cleared as stale).
  EXPECT_EQ(restart_with("native", "f16"), 0);
  std::filesystem::remove_all(dir);
}

TEST_F(ServerTest, TwoServersShareTheDramTier) {
  const std::string name = "srv" + std::to_string(::getpid());
  std::string system;
  for (int i = 0; i < 30; ++i) system += "Every answer must be short and kind. ";
  auto body = [&](const std::string& question) {
    return json{{"prompt", system + question}, {"max_tokens", 5}, {"temperature", 0}}.dump();
  };
  start({"--kv-dram-bytes", "64MiB", "--kv-dram-name", name});
  ServerProcess second;
  std::string log;
  ASSERT_TRUE(second.start({"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes",
                            "64MiB", "--kv-dram-bytes", "64MiB", "--kv-dram-name", name},
                           log))
      << log;
  auto first = curl(url("/v1/completions"), body("What is one?"));
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(json::parse(first.body)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  // The first server writes its blocks to the shared tier in the background.
  HttpResult other;
  int cached = 0;
  for (int attempt = 0; attempt < 50 && cached == 0; ++attempt) {
    other = curl(second.url() + "/v1/completions", body("What is two?"));
    ASSERT_EQ(other.status, 200) << other.body;
    cached = json::parse(other.body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
    if (cached == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(cached, 100);
  // Same text as a server that computed everything itself.
  ServerProcess alone;
  ASSERT_TRUE(alone.start(
      {"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes", "64MiB"}, log));
  auto reference = curl(alone.url() + "/v1/completions", body("What is two?"));
  EXPECT_EQ(json::parse(other.body)["choices"][0]["text"],
            json::parse(reference.body)["choices"][0]["text"]);
  auto m = curl(second.url() + "/metrics");
  EXPECT_GT(metric(m.body, "infergrid_kv_dram_hits_total").value_or(0), 0);
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    if (entry.path().filename().string().starts_with("infergrid-kv-" + name + "-")) {
      std::filesystem::remove(entry.path());
    }
  }
}

TEST_F(ServerTest, SigkillDuringTierWritesThenRestartServesOnlyCorrectOutput) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_server_kill_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto prompt_for = [](int i) {
    std::string p = "Conversation " + std::to_string(i) + ": ";
    for (int w = 0; w < 60; ++w) p += "word" + std::to_string((i * 7 + w) % 50) + " ";
    return json{{"prompt", p}, {"max_tokens", 4}, {"temperature", 0}}.dump();
  };
  // A KV pool of a few blocks: every request evicts the previous ones, so the disk tier is
  // being written all the time.
  const std::vector<std::string> tiny_pool = {"--kv-cache-bytes", "1MiB", "--kv-disk-dir",
                                              dir.string()};
  start(tiny_pool);
  std::atomic<bool> stop{false};
  std::thread load([&] {
    for (int i = 0; !stop; i = (i + 1) % 12) curl(url("/v1/completions"), prompt_for(i));
  });
  // Killed once the disk tier holds blocks and while the load still writes more.
  const auto disk_blocks = [&] {
    return metric(curl(url("/metrics")).body, "infergrid_kv_disk_blocks").value_or(0);
  };
  for (int i = 0; i < 500 && disk_blocks() < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const bool written = disk_blocks() >= 8;
  server_.signal(SIGKILL);
  stop = true;
  load.join();
  ASSERT_TRUE(written) << "the disk tier was not being written when the server was killed";
  server_.wait(std::chrono::seconds(5));

  ServerProcess restarted, reference;
  std::string log;
  std::vector<std::string> args = {"--model", test_model_path(), "--threads", "1"};
  auto with_tiers = args;
  with_tiers.insert(with_tiers.end(), tiny_pool.begin(), tiny_pool.end());
  ASSERT_TRUE(restarted.start(with_tiers, log)) << log;
  args.insert(args.end(), {"--kv-cache-bytes", "64MiB", "--no-prefix-cache"});
  ASSERT_TRUE(reference.start(args, log)) << log;
  int hits = 0;
  for (int i = 0; i < 12; ++i) {
    auto got = curl(restarted.url() + "/v1/completions", prompt_for(i));
    auto want = curl(reference.url() + "/v1/completions", prompt_for(i));
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_EQ(json::parse(got.body)["choices"][0]["text"],
              json::parse(want.body)["choices"][0]["text"])
        << "conversation " << i;
    hits += json::parse(got.body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  }
  EXPECT_GT(hits, 0);  // blocks written before the kill were found after the restart
  // The restarted server still writes evicted blocks in the background: stop it first, or
  // the removal races a new file into the directory.
  restarted.signal(SIGKILL);
  restarted.wait(std::chrono::seconds(5));
  std::filesystem::remove_all(dir);
}

TEST_F(ServerTest, CorruptedSharedSegmentIsDetectedAndOutputStaysRight) {
  const std::string name = "corrupt" + std::to_string(::getpid());
  std::string system;
  for (int i = 0; i < 30; ++i) system += "Reply in one sentence please. ";
  const std::string body = json{{"prompt", system}, {"max_tokens", 5}, {"temperature", 0}}.dump();
  start({"--kv-dram-bytes", "1MiB", "--kv-dram-name", name});
  auto first = curl(url("/v1/completions"), body);
  ASSERT_EQ(first.status, 200);
  // The write-through runs in the background: wait until the prompt's full blocks are stored.
  const int full_blocks = (json::parse(first.body)["usage"]["prompt_tokens"].get<int>()) / 16;
  const auto stored = [&] {
    return metric(curl(url("/metrics")).body, "infergrid_kv_dram_blocks").value_or(0);
  };
  for (int i = 0; i < 250 && stored() < full_blocks; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(stored(), full_blocks);
  // Flip a byte in every block slot of the segment (slots fill the end of the file).
  std::filesystem::path segment;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    if (entry.path().filename().string().starts_with("infergrid-kv-" + name + "-")) {
      segment = entry.path();
    }
  }
  ASSERT_FALSE(segment.empty());
  {
    const auto size = std::filesystem::file_size(segment);
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    for (uint64_t at = size - 1000; at > size / 4; at -= 4096) {
      f.seekg(static_cast<std::streamoff>(at));
      char c = 0;
      f.read(&c, 1);
      f.seekp(static_cast<std::streamoff>(at));
      f.put(static_cast<char>(c ^ 0x21));
    }
  }
  ServerProcess second;
  std::string log;
  ASSERT_TRUE(second.start({"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes",
                            "64MiB", "--kv-dram-bytes", "1MiB", "--kv-dram-name", name},
                           log))
      << log;
  auto again = curl(second.url() + "/v1/completions", body);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(json::parse(again.body)["choices"][0]["text"],
            json::parse(first.body)["choices"][0]["text"]);
  auto m = curl(second.url() + "/metrics");
  EXPECT_GT(metric(m.body, "infergrid_kv_dram_blocks_dropped_total").value_or(0), 0);
  std::filesystem::remove(segment);
}

}  // namespace
}  // namespace infergrid::testing
