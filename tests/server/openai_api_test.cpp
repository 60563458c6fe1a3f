#include "server/openai_api.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <tuple>

namespace infergrid {
namespace {

using nlohmann::json;

ApiRequest parse_ok(const std::string& body, Endpoint endpoint) {
  auto r = parse_api_request(body, endpoint);
  if (auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << body << " -> " << e->message;
    return {};
  }
  return std::get<ApiRequest>(r);
}

ApiError parse_error(const std::string& body, Endpoint endpoint) {
  auto r = parse_api_request(body, endpoint);
  if (auto* e = std::get_if<ApiError>(&r)) return *e;
  ADD_FAILURE() << body << " was accepted";
  return {};
}

TEST(OpenAiApi, ParsesCompletionFields) {
  ApiRequest r = parse_ok(R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0.5,
      "top_p":0.9,"top_k":20,"min_p":0.1,"stop":["a","bc"],"seed":-3,"presence_penalty":1,
      "frequency_penalty":-1,"logprobs":2,"stream":true,"stream_options":{"include_usage":true},
      "user":"u","ignore_eos":true,"unknown_field":{"x":1}})",
                          Endpoint::kCompletions);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt_text, "hi");
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_FLOAT_EQ(r.options.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.options.sampling.top_p, 0.9f);
  EXPECT_EQ(r.options.sampling.top_k, 20);
  EXPECT_FLOAT_EQ(r.options.sampling.min_p, 0.1f);
  EXPECT_EQ(r.options.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.options.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.options.logprobs, 2);
  EXPECT_TRUE(r.stream && r.include_usage && r.options.ignore_eos);
  EXPECT_EQ(r.user, "u");

  ApiRequest tokens = parse_ok(R"({"prompt":[1,2,3]})", Endpoint::kCompletions);
  EXPECT_EQ(tokens.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(tokens.max_tokens.has_value());
  EXPECT_FLOAT_EQ(tokens.options.sampling.temperature, 1.0f);  // OpenAI's default
  EXPECT_EQ(parse_ok(R"({"prompt":["one"],"max_tokens":4.0})", Endpoint::kCompletions).max_tokens,
            4);
}

TEST(OpenAiApi, ParsesChatMessagesAndContentParts) {
  ApiRequest r = parse_ok(R"({"messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
      {"role":"assistant","content":null},{"role":"developer","content":"d"}],
      "max_tokens":3,"max_completion_tokens":9,"logprobs":true,"top_logprobs":4})",
                          Endpoint::kChat);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[3].role, "system");
  EXPECT_EQ(r.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(r.options.logprobs, 4);
}

TEST(OpenAiApi, RejectsWrongTypesAndValuesNamingTheField) {
  struct Case {
    std::string body;
    Endpoint endpoint;
    std::string param;
  };
  const std::vector<Case> cases = {
      {R"({"prompt":"x","max_tokens":0})", Endpoint::kCompletions, "max_tokens"},
      {R"({"prompt":"x","max_tokens":1.5})", Endpoint::kCompletions, "max_tokens"},
      {R"({"prompt":"x","max_tokens":true})", Endpoint::kCompletions, "max_tokens"},
      {R"({"prompt":"x","temperature":-1})", Endpoint::kCompletions, "temperature"},
      {R"({"prompt":"x","top_p":0})", Endpoint::kCompletions, "top_p"},
      {R"({"prompt":"x","n":17})", Endpoint::kCompletions, "n"},
      {R"({"prompt":"x","n":0})", Endpoint::kCompletions, "n"},
      {R"({"prompt":"x","tools":[]})", Endpoint::kCompletions, "tools"},
      {R"({"prompt":"x","seed":"s"})", Endpoint::kCompletions, "seed"},
      {R"({"prompt":"x","stop":""})", Endpoint::kCompletions, "stop"},
      {R"({"prompt":"x","stop":{"a":1}})", Endpoint::kCompletions, "stop"},
      {R"({"prompt":"x","logprobs":99})", Endpoint::kCompletions, "logprobs"},
      {R"({"prompt":"x","stream_options":{"include_usage":true}})", Endpoint::kCompletions,
       "stream_options"},
      {R"({"prompt":[1,-2]})", Endpoint::kCompletions, "prompt"},
      {R"({"prompt":""})", Endpoint::kCompletions, "prompt"},
      {R"({"prompt":7})", Endpoint::kCompletions, "prompt"},
      {R"({"messages":[]})", Endpoint::kChat, "messages"},
      {R"({"messages":[{"content":"x"}]})", Endpoint::kChat, "messages"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", Endpoint::kChat,
       "messages[0].content"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", Endpoint::kChat,
       "top_logprobs"},
      {R"({"messages":[{"role":"user","content":"x"}],"model":5})", Endpoint::kChat, "model"},
  };
  for (const Case& c : cases) {
    ApiError e = parse_error(c.body, c.endpoint);
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.message;
    json j = json::parse(e.to_json());
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    EXPECT_EQ(j["error"]["param"], c.param);
  }
  EXPECT_EQ(parse_error("{", Endpoint::kCompletions).http_status, 400);
  EXPECT_EQ(parse_error("null", Endpoint::kCompletions).http_status, 400);
  EXPECT_EQ(parse_error("", Endpoint::kChat).http_status, 400);
}

// What is not implemented yet is refused, naming the field, instead of being accepted and
// ignored; the values that ask for nothing are accepted.
TEST(OpenAiApi, RefusesUnimplementedFieldsInsteadOfIgnoringThem) {
  const std::string chat = R"("messages":[{"role":"user","content":"hi"}])";
  const std::vector<std::pair<std::string, std::string>> refused = {
      {R"("functions":[{"name":"f"}])", "functions"},
      {R"("function_call":"auto")", "function_call"},
  };
  for (const auto& [field, param] : refused) {
    const ApiError e = parse_error("{" + chat + "," + field + "}", Endpoint::kChat);
    EXPECT_EQ(e.http_status, 400) << field;
    EXPECT_EQ(e.param, param) << field;
    EXPECT_EQ(e.code, "unsupported_parameter") << field;
    EXPECT_NE(e.message.find("not supported"), std::string::npos) << e.message;
  }
  for (const auto& [field, param] :
       std::vector<std::pair<std::string, std::string>>{{R"("echo":true)", "echo"},
                                                        {R"("best_of":3)", "best_of"},
                                                        {R"("suffix":"end")", "suffix"}}) {
    EXPECT_EQ(parse_error(R"({"prompt":"x",)" + field + "}", Endpoint::kCompletions).param, param);
  }
  // Defaults and nulls ask for nothing.
  for (const std::string field :
       {R"("tools":[])", R"("tool_choice":"none")", R"("response_format":{"type":"text"})",
        R"("logit_bias":{})", R"("tools":null)"}) {
    parse_ok("{" + chat + "," + field + "}", Endpoint::kChat);
  }
  for (const std::string field : {R"("echo":false)", R"("best_of":1)", R"("suffix":"")"}) {
    parse_ok(R"({"prompt":"x",)" + field + "}", Endpoint::kCompletions);
  }
}

TEST(OpenAiApi, ResponseFormatJsonSchemaAndGrammarBecomeOneGrammar) {
  const std::string chat = R"({"messages":[{"role":"user","content":"hi"}],)";
  ApiRequest object =
      parse_ok(chat + R"("response_format":{"type":"json_object"}})", Endpoint::kChat);
  EXPECT_EQ(object.grammar_param, "response_format");
  EXPECT_NE(object.grammar.find("root ::= object"), std::string::npos) << object.grammar;

  // The properties come out in the order the schema declares them, not sorted.
  ApiRequest schema = parse_ok(
      chat + R"("response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,)"
             R"("schema":{"type":"object","properties":{"zeta":{"type":"integer"},)"
             R"("alpha":{"type":"string"}},"required":["zeta","alpha"]}}}})",
      Endpoint::kChat);
  EXPECT_EQ(schema.grammar_param, "response_format");
  const size_t zeta = schema.grammar.find("zeta"), alpha = schema.grammar.find("alpha");
  ASSERT_NE(zeta, std::string::npos) << schema.grammar;
  ASSERT_NE(alpha, std::string::npos) << schema.grammar;
  EXPECT_LT(zeta, alpha) << schema.grammar;

  ApiRequest llama_schema =
      parse_ok(R"({"prompt":"x","json_schema":{"type":"boolean"}})", Endpoint::kCompletions);
  EXPECT_EQ(llama_schema.grammar_param, "json_schema");
  ApiRequest gbnf =
      parse_ok(R"({"prompt":"x","grammar":"root ::= \"yes\" | \"no\""})", Endpoint::kCompletions);
  EXPECT_EQ(gbnf.grammar, R"(root ::= "yes" | "no")");
  EXPECT_EQ(gbnf.grammar_param, "grammar");
  EXPECT_TRUE(
      parse_ok(chat + R"("response_format":{"type":"text"}})", Endpoint::kChat).grammar.empty());

  const std::vector<std::tuple<std::string, std::string, std::string>> refused = {
      {R"("response_format":{"type":"xml"})", "response_format", "'xml'"},
      {R"("response_format":"json")", "response_format", "object"},
      {R"("response_format":{"type":"json_schema"})", "response_format", "json_schema"},
      {R"("response_format":{"type":"json_schema","json_schema":{"name":3,"schema":{}}})",
       "response_format.json_schema.name", "string"},
      {R"("response_format":{"type":"json_schema","json_schema":{"schema":{"not":{}}}})",
       "response_format", "'not'"},
      {R"("response_format":{"type":"json_schema","json_schema":{"schema":{"type":"string",)"
       R"j("pattern":"(?=x)"}}})j",
       "response_format", "lookaround"},
      {R"("json_schema":{"type":"integer","multipleOf":3})", "json_schema", "multipleOf"},
      {R"("json_schema":{"$ref":"#/$defs/missing"})", "json_schema", "missing"},
      {R"("grammar":42)", "grammar", "GBNF"},
      {R"("grammar":"root ::= x","json_schema":{})", "grammar", "both"},
  };
  for (const auto& [field, param, mentions] : refused) {
    const ApiError e = parse_error(chat + field + "}", Endpoint::kChat);
    EXPECT_EQ(e.http_status, 400) << field;
    EXPECT_EQ(e.param, param) << field;
    EXPECT_NE(e.message.find(mentions), std::string::npos) << field << ": " << e.message;
  }
}

// The router's failover fields: a token report flag and the tokens a resumed run produced.
TEST(OpenAiApi, ReadsTheRoutersFailoverFields) {
  const ApiRequest r =
      parse_ok(R"({"prompt":"a","infergrid_report_tokens":true,"infergrid_resume":[5,0,77]})",
               Endpoint::kCompletions);
  EXPECT_TRUE(r.report_tokens);
  EXPECT_EQ(r.resume_tokens, (std::vector<int32_t>{5, 0, 77}));
  EXPECT_FALSE(parse_ok(R"({"prompt":"a"})", Endpoint::kCompletions).report_tokens);
  for (const char* bad :
       {R"({"prompt":"a","infergrid_resume":"5"})", R"({"prompt":"a","infergrid_resume":[-1]})",
        R"({"prompt":"a","infergrid_resume":[1.5]})",
        R"({"prompt":"a","infergrid_resume":[4294967296]})",
        R"({"prompt":"a","infergrid_report_tokens":1})"}) {
    const ApiError e = parse_error(bad, Endpoint::kCompletions);
    EXPECT_EQ(e.http_status, 400) << bad;
  }
}

TEST(OpenAiApi, LogitBiasIsReadAsTokenIdsWithBoundedBiases) {
  ApiRequest r =
      parse_ok(R"({"prompt":"x","logit_bias":{"5":100,"17":-2.5}})", Endpoint::kCompletions);
  auto bias = r.options.sampling.logit_bias;
  std::sort(bias.begin(), bias.end());
  ASSERT_EQ(bias.size(), 2u);
  EXPECT_EQ(bias[0], (std::pair<int32_t, float>{5, 100.0f}));
  EXPECT_EQ(bias[1], (std::pair<int32_t, float>{17, -2.5f}));
  for (const std::string field :
       {R"("logit_bias":{"x":1})", R"("logit_bias":{"-1":1})", R"("logit_bias":{"1":101})",
        R"("logit_bias":{"1":"a"})", R"("logit_bias":[1])"}) {
    const ApiError e = parse_error(R"({"prompt":"x",)" + field + "}", Endpoint::kCompletions);
    EXPECT_EQ(e.http_status, 400) << field;
    EXPECT_EQ(e.param, "logit_bias") << field;
  }
}

TEST(OpenAiApi, FormatsResponsesAndChunksLikeOpenAi) {
  ResponseMeta meta{"cmpl-1", 1700000000, "m"};
  std::vector<ChoiceLogprob> lps = {{"He", -0.5f, {{"He", -0.5f}, {"A", -1.0f}}},
                                    {"llo", -0.25f, {}}};
  json c = json::parse(completion_response(meta, Endpoint::kCompletions, "Hello", &lps,
                                           FinishReason::kStop, {3, 2, 1}));
  EXPECT_EQ(c["choices"][0]["text"], "Hello");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"], json({"He", "llo"}));
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json({0, 2}));
  EXPECT_EQ(c["usage"]["total_tokens"], 5);
  EXPECT_EQ(c["usage"]["prompt_tokens_details"]["cached_tokens"], 1);

  json chat = json::parse(
      completion_response(meta, Endpoint::kChat, "Hi", &lps, FinishReason::kLength, {3, 2, 0}));
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "Hi");
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["token"], "A");
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][1]["bytes"], json({108, 108, 111}));

  json first = json::parse(stream_chunk(meta, Endpoint::kChat, "x", nullptr, std::nullopt, true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  json last =
      json::parse(stream_chunk(meta, Endpoint::kChat, "", nullptr, FinishReason::kStop, false));
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  json usage = json::parse(usage_chunk(meta, Endpoint::kCompletions, {1, 2, 0}));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
  // Invalid UTF-8 in generated text must not break the JSON.
  const json invalid_utf8 = json::parse(
      completion_response(meta, Endpoint::kChat, "\xff\xfe", nullptr, FinishReason::kStop, {}));
  EXPECT_TRUE(invalid_utf8["choices"][0]["message"]["content"].is_string());
}

// A bounded randomized fuzz: mutated valid bodies and random bytes must always give a request
// or an error, never an exception or a crash.
TEST(OpenAiApi, FuzzedBodiesNeverThrow) {
  const std::vector<std::string> seeds = {
      R"({"model":"m","prompt":"hello","max_tokens":5,"temperature":0.5,"stop":["a"],"stream":true,"stream_options":{"include_usage":true},"logprobs":2})",
      R"({"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"top_logprobs":3,"logprobs":true,"seed":1,"n":1})",
      R"({"prompt":[1,2,3],"top_k":5,"min_p":0.2,"presence_penalty":1.5})",
  };
  const std::string alphabet =
      std::string("{}[]\":,0123456789.-+eEtrufalsn \\u\xff") + std::string(1, '\0') + "abcxyz";
  std::mt19937_64 rng(12345);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int iterations = 0, accepted = 0;
  for (; iterations < 200000 && std::chrono::steady_clock::now() < deadline; ++iterations) {
    std::string body = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 4) {
        case 0:
          body[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          body.erase(at, 1 + rng() % 8);
          break;
        case 2:
          body.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 3:
          body = body.substr(0, at);
          break;
      }
    }
    if (rng() % 50 == 0) {
      body.resize(rng() % 64);
      for (char& ch : body) ch = static_cast<char>(rng());
    }
    const Endpoint endpoint = rng() % 2 ? Endpoint::kChat : Endpoint::kCompletions;
    ASSERT_NO_THROW({
      auto r = parse_api_request(body, endpoint);
      if (auto* error = std::get_if<ApiError>(&r)) {
        EXPECT_GE(error->http_status, 400);
        EXPECT_FALSE(json::parse(error->to_json(), nullptr, false).is_discarded());
      } else {
        ++accepted;
      }
    }) << body;
  }
  EXPECT_GT(iterations, 1000);
  RecordProperty("iterations", iterations);
  RecordProperty("accepted", accepted);
}

// Grammar-aware: every field the parser reads, set in an otherwise valid body to every hostile
// value (numbers at and past every limit, every wrong type), on both endpoints. Each must give
// a request or a 400/413, never an exception: one such body used to end the server.
TEST(OpenAiApi, EveryFieldWithEveryHostileValueIsAnErrorOrARequest) {
  const std::vector<std::string> fields = {"model",
                                           "user",
                                           "prompt",
                                           "messages",
                                           "max_tokens",
                                           "max_completion_tokens",
                                           "n",
                                           "temperature",
                                           "top_p",
                                           "min_p",
                                           "presence_penalty",
                                           "frequency_penalty",
                                           "repetition_penalty",
                                           "top_k",
                                           "seed",
                                           "stop",
                                           "ignore_eos",
                                           "priority",
                                           "logprobs",
                                           "top_logprobs",
                                           "stream",
                                           "stream_options",
                                           "truncate_prompt_tokens",
                                           "tools",
                                           "tool_choice",
                                           "parallel_tool_calls",
                                           "response_format",
                                           "unknown_field"};
  const std::string digits400(400, '9');
  const std::vector<std::string> values = {
      "1e400",
      "-1e400",
      "1e309",
      "-1e309",
      digits400,
      "-" + digits400,
      "1" + digits400 + ".5",
      "1.7976931348623157e308",
      "2.2250738585072014e-308",
      "5e-324",
      "-0.0",
      "0",
      "-1",
      "1.5",
      "9223372036854775807",
      "9223372036854775808",
      "-9223372036854775808",
      "-9223372036854775809",
      "18446744073709551615",
      "18446744073709551616",
      "9007199254740993",
      "2147483647",
      "2147483648",
      "true",
      "false",
      "null",
      "\"\"",
      "\"x\"",
      "\"\\u0000\"",
      "\"\\ud800\"",
      "[]",
      "{}",
      "[1e400]",
      "[1.0,2]",
      "[-1]",
      "[\"a\",1]",
      "[[1,2]]",
      "[[1],[2]]",
      "{\"include_usage\":1e400}",
      "{\"include_usage\":\"yes\"}",
      "[{\"role\":\"user\",\"content\":1e400}]",
      "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":5}]}]",
      "[{\"role\":1,\"content\":\"x\"}]",
      "[null]"};
  const std::string chat_seed = R"({"messages":[{"role":"user","content":"hi"}],"stream":true)";
  const std::string completion_seed = R"({"prompt":"hi","stream":true)";
  int cases = 0, errors = 0;
  for (const std::string& field : fields) {
    for (const std::string& value : values) {
      for (const Endpoint endpoint : {Endpoint::kChat, Endpoint::kCompletions}) {
        // Appended last, so it overrides the seed's value where the field repeats.
        const std::string body = (endpoint == Endpoint::kChat ? chat_seed : completion_seed) +
                                 ",\"" + field + "\":" + value + "}";
        ++cases;
        std::variant<ApiRequest, ApiError> r;
        ASSERT_NO_THROW(r = parse_api_request(body, endpoint)) << body;
        if (auto* error = std::get_if<ApiError>(&r)) {
          ++errors;
          EXPECT_TRUE(error->http_status == 400 || error->http_status == 413)
              << body << " -> " << error->http_status;
          EXPECT_FALSE(error->message.empty());
          EXPECT_FALSE(json::parse(error->to_json(), nullptr, false).is_discarded());
        }
        const bool overflows = value.find("e400") != std::string::npos ||
                               value.find("e309") != std::string::npos ||
                               value.find(digits400) != std::string::npos;
        if (overflows) {
          ASSERT_TRUE(std::holds_alternative<ApiError>(r)) << body;
          EXPECT_NE(std::get<ApiError>(r).message.find("out of range"), std::string::npos)
              << std::get<ApiError>(r).message;
        }
      }
    }
  }
  RecordProperty("cases", cases);
  RecordProperty("errors", errors);
  EXPECT_GT(errors, cases / 2);
}

TEST(OpenAiApi, BoundsNestingAndValueCountBeforeBuildingATree) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ApiError nested = parse_error(deep, Endpoint::kCompletions);
  EXPECT_EQ(nested.http_status, 400);
  EXPECT_NE(nested.message.find("deeper"), std::string::npos) << nested.message;

  std::string many = R"({"prompt":"x","junk":[)";
  for (int i = 0; i < 300000; ++i) many += "1,";
  many += "1]}";
  ApiError wide = parse_error(many, Endpoint::kCompletions);
  EXPECT_EQ(wide.http_status, 413);
  // A token-id prompt as long as a large context still parses.
  std::string tokens = R"({"prompt":[)";
  for (int i = 0; i < 131072; ++i) tokens += "7,";
  tokens += "7]}";
  EXPECT_EQ(parse_ok(tokens, Endpoint::kCompletions).prompt_tokens.size(), 131073u);
}

TEST(OpenAiApi, TokenPromptErrorsSayWhatIsWrong) {
  ApiError fractional = parse_error(R"({"prompt":[1.0,2]})", Endpoint::kCompletions);
  EXPECT_EQ(fractional.param, "prompt");
  EXPECT_NE(fractional.message.find("'prompt[0]' must be an integer token id"), std::string::npos)
      << fractional.message;
  ApiError negative = parse_error(R"({"prompt":[3,-2]})", Endpoint::kCompletions);
  EXPECT_NE(negative.message.find("'prompt[1]' is -2"), std::string::npos) << negative.message;
  EXPECT_EQ(parse_ok(R"({"prompt":[[4,5]]})", Endpoint::kCompletions).prompt_tokens,
            (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(parse_ok(R"({"prompt":"x","priority":3})", Endpoint::kCompletions).priority, 3);
  EXPECT_EQ(parse_ok(R"({"prompt":"x","truncate_prompt_tokens":-1})", Endpoint::kCompletions)
                .truncate_prompt_tokens,
            -1);
  EXPECT_EQ(
      parse_error(R"({"prompt":"x","truncate_prompt_tokens":0})", Endpoint::kCompletions).param,
      "truncate_prompt_tokens");
}

}  // namespace
}  // namespace infergrid
