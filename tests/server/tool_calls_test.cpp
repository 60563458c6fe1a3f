// Tool calls: reading tools/tool_choice, the grammar of each family's call format, and the
// model's output read back into calls, whole or streamed in pieces of every size.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "../grammar/grammar_test_util.h"
#include "grammar/grammar.h"
#include "grammar/grammar_matcher.h"
#include "server/openai_api.h"

namespace infergrid {
namespace {

using json = nlohmann::json;

const char* kWeatherTool = R"({"type":"function","function":{"name":"get_weather",
    "description":"Current weather","parameters":{"type":"object","properties":{
    "city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city","unit"]}}})";
const char* kTimeTool = R"({"type":"function","function":{"name":"get_time"}})";

std::variant<ToolSpec, ApiError> parse(const std::string& fields) {
  const std::string body = R"({"messages":[{"role":"user","content":"x"}],)" + fields + "}";
  ToolSpec spec;
  if (auto error = parse_tools(json::parse(body), body, spec)) return *error;
  return spec;
}

ToolSpec parse_ok(const std::string& fields) {
  auto r = parse(fields);
  if (auto* e = std::get_if<ApiError>(&r)) ADD_FAILURE() << fields << " -> " << e->message;
  return std::holds_alternative<ToolSpec>(r) ? std::get<ToolSpec>(r) : ToolSpec{};
}

TEST(ToolCalls, ReadsToolsChoiceAndParallelInTheirDeclaredOrder) {
  const ToolSpec spec = parse_ok(
      std::string(R"("tools":[)") + kWeatherTool + "," + kTimeTool +
      R"(],"tool_choice":{"type":"function","function":{"name":"get_time"}},"parallel_tool_calls":false)");
  ASSERT_EQ(spec.names.size(), 2u);
  EXPECT_EQ(spec.names[0], "get_weather");
  EXPECT_EQ(spec.choice, ToolChoice::kNamed);
  EXPECT_EQ(spec.named, "get_time");
  EXPECT_FALSE(spec.parallel);
  // Properties as declared (city before unit), not sorted; a tool without parameters takes
  // any object.
  EXPECT_EQ(spec.parameters[0]["properties"].begin().key(), "city");
  EXPECT_EQ(spec.parameters[1], nlohmann::ordered_json({{"type", "object"}}));
  EXPECT_EQ(spec.tools[0]["function"].begin().key(), "name");
  EXPECT_TRUE(spec.active());
  EXPECT_FALSE(
      parse_ok(std::string(R"("tools":[)") + kTimeTool + R"(],"tool_choice":"none")").active());
}

TEST(ToolCalls, MalformedToolsAreA400NamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("tools":{})", "tools"},
      {R"("tools":[1])", "tools"},
      {R"("tools":[{"type":"retrieval"}])", "tools"},
      {R"("tools":[{"type":"function"}])", "tools"},
      {R"("tools":[{"type":"function","function":{"name":""}}])", "tools"},
      {R"("tools":[{"type":"function","function":{"name":"has space"}}])", "tools"},
      {R"("tools":[{"type":"function","function":{"name":"f","parameters":[]}}])", "tools"},
      {R"("tools":[{"type":"function","function":{"name":"f","description":3}}])", "tools"},
      {R"("tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}])",
       "tools"},
      {R"("tool_choice":"always")", "tool_choice"},
      {R"("tool_choice":"required")", "tool_choice"},
      {R"("tool_choice":{"type":"function"})", "tool_choice"},
      {R"("tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}})",
       "tool_choice"},
      {R"("tool_choice":7)", "tool_choice"},
      {R"("parallel_tool_calls":"yes")", "parallel_tool_calls"},
  };
  for (const auto& [fields, param] : cases) {
    auto r = parse(fields);
    ASSERT_TRUE(std::holds_alternative<ApiError>(r)) << fields << " was accepted";
    EXPECT_EQ(std::get<ApiError>(r).http_status, 400) << fields;
    EXPECT_EQ(std::get<ApiError>(r).param, param) << fields;
  }
}

// Whether the grammar accepts `text` whole (and may end there).
bool grammar_accepts(const std::string& gbnf, const std::string& text) {
  auto grammar = Grammar::from_gbnf(gbnf);
  EXPECT_TRUE(grammar.is_ok()) << grammar.status().to_string() << "\n" << gbnf;
  if (!grammar.is_ok()) return false;
  auto compiled = std::make_shared<const CompiledGrammar>(std::move(*grammar),
                                                          test::synthetic_vocabulary(1, 50));
  GrammarMatcher matcher(compiled);
  return matcher.accept_bytes(text).is_ok() && matcher.can_end();
}

TEST(ToolCalls, TheGrammarOfEachFormatAcceptsItsCallsAndNothingElse) {
  ToolSpec spec = parse_ok(std::string(R"("tools":[)") + kWeatherTool + "," + kTimeTool +
                           R"(],"tool_choice":"required")");
  const std::string weather =
      R"({"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}})";
  const std::string time = R"({"name": "get_time", "arguments": {}})";
  auto hermes = tool_call_grammar(spec, ToolCallFormat::kHermes);
  ASSERT_TRUE(hermes.is_ok()) << hermes.status().to_string();
  EXPECT_TRUE(hermes->trigger.empty());  // required: constrained from the first token
  EXPECT_TRUE(grammar_accepts(hermes->gbnf, "<tool_call>\n" + weather + "\n</tool_call>"));
  EXPECT_TRUE(grammar_accepts(hermes->gbnf, "<tool_call>\n" + weather + "\n</tool_call>\n" +
                                                "<tool_call>\n" + time + "\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(hermes->gbnf, "Sure! <tool_call>\n" + weather + "\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(hermes->gbnf,
                               R"(<tool_call>
{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}}
</tool_call>)"));
  EXPECT_FALSE(grammar_accepts(hermes->gbnf, R"(<tool_call>
{"name": "get_weather", "arguments": {"unit": "c"}}
</tool_call>)"));  // a required argument missing
  EXPECT_FALSE(grammar_accepts(hermes->gbnf, R"(<tool_call>
{"name": "launch", "arguments": {}}
</tool_call>)"));

  spec.parallel = false;
  hermes = tool_call_grammar(spec, ToolCallFormat::kHermes);
  EXPECT_FALSE(grammar_accepts(hermes->gbnf, "<tool_call>\n" + weather + "\n</tool_call>\n" +
                                                 "<tool_call>\n" + time + "\n</tool_call>"));

  spec.parallel = true;
  auto mistral = tool_call_grammar(spec, ToolCallFormat::kMistral);
  ASSERT_TRUE(mistral.is_ok());
  EXPECT_TRUE(grammar_accepts(mistral->gbnf, "[TOOL_CALLS][" + weather + ", " + time + "]"));
  EXPECT_FALSE(grammar_accepts(mistral->gbnf, "[TOOL_CALLS][]"));

  auto llama = tool_call_grammar(spec, ToolCallFormat::kLlama3Json);
  ASSERT_TRUE(llama.is_ok());
  EXPECT_TRUE(grammar_accepts(
      llama->gbnf, R"({"name": "get_weather", "parameters": {"city": "Oslo", "unit": "f"}})"));
  EXPECT_FALSE(grammar_accepts(llama->gbnf, weather));  // "arguments" is not Llama's key

  spec.choice = ToolChoice::kNamed;
  spec.named = "get_time";
  hermes = tool_call_grammar(spec, ToolCallFormat::kHermes);
  EXPECT_TRUE(grammar_accepts(hermes->gbnf, "<tool_call>\n" + time + "\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(hermes->gbnf, "<tool_call>\n" + weather + "\n</tool_call>"));

  // auto: lazy, from the format's marker on.
  spec.choice = ToolChoice::kAuto;
  EXPECT_EQ(tool_call_grammar(spec, ToolCallFormat::kHermes)->trigger, "<tool_call>");
  EXPECT_EQ(tool_call_grammar(spec, ToolCallFormat::kMistral)->trigger, "[TOOL_CALLS]");
  spec.choice = ToolChoice::kNone;
  EXPECT_TRUE(tool_call_grammar(spec, ToolCallFormat::kHermes)->gbnf.empty());
}

TEST(ToolCalls, ASchemaThatCannotBeEnforcedFailsRequiredButLeavesAutoFree) {
  ToolSpec spec = parse_ok(
      R"("tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"not":{"type":"string"}}}}}}],"tool_choice":"required")");
  auto required = tool_call_grammar(spec, ToolCallFormat::kHermes);
  ASSERT_FALSE(required.is_ok());
  EXPECT_NE(required.status().message().find("not"), std::string::npos);
  spec.choice = ToolChoice::kAuto;
  auto automatic = tool_call_grammar(spec, ToolCallFormat::kHermes);
  ASSERT_TRUE(automatic.is_ok());
  EXPECT_TRUE(automatic->gbnf.empty());
}

TEST(ToolCalls, ParsesEachFamilysFormat) {
  auto hermes = parse_assistant_output(
      "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n"
      "</tool_call>",
      ToolCallFormat::kHermes);
  ASSERT_EQ(hermes.calls.size(), 2u);
  EXPECT_EQ(hermes.content, "Let me look.");
  EXPECT_EQ(hermes.calls[0].name, "get_weather");
  EXPECT_EQ(hermes.calls[0].arguments, R"({"city": "Oslo"})");  // the model's own text
  EXPECT_EQ(hermes.calls[1].arguments, "{}");
  EXPECT_EQ(hermes.calls[0].id.rfind("call_", 0), 0u);
  EXPECT_NE(hermes.calls[0].id, hermes.calls[1].id);

  auto mistral = parse_assistant_output(
      R"([TOOL_CALLS][{"name": "get_time", "arguments": {"tz": "UTC"}, "id": "abcDEF123"}])",
      ToolCallFormat::kMistral);
  ASSERT_EQ(mistral.calls.size(), 1u);
  EXPECT_FALSE(mistral.content.has_value());
  EXPECT_EQ(mistral.calls[0].id, "abcDEF123");  // the model's own id, when it is one
  EXPECT_EQ(mistral.calls[0].arguments, R"({"tz": "UTC"})");
  auto mistral_new_id = parse_assistant_output(R"([TOOL_CALLS][{"name": "f", "arguments": {}}])",
                                               ToolCallFormat::kMistral);
  ASSERT_EQ(mistral_new_id.calls.size(), 1u);
  EXPECT_EQ(mistral_new_id.calls[0].id.size(), 9u);  // what Mistral's templates demand

  auto llama = parse_assistant_output(
      R"(<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}})",
      ToolCallFormat::kLlama3Json);
  ASSERT_EQ(llama.calls.size(), 1u);
  EXPECT_EQ(llama.calls[0].arguments, R"({"city": "Rome"})");

  // A JSON answer with a "name" is not a Llama call: calls carry parameters.
  const std::string person = R"({"name": "Ada", "age": 36})";
  auto answer = parse_assistant_output(person, ToolCallFormat::kLlama3Json);
  EXPECT_TRUE(answer.calls.empty());
  EXPECT_EQ(answer.content, person);

  // Not calls: plain text, a broken call, a truncated one, arguments that are not JSON.
  for (const std::string& text :
       {std::string("The weather is fine."), std::string("<tool_call>\nnot json\n</tool_call>"),
        std::string("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Os"),
        std::string("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": tru}}\n</tool_call>"),
        std::string("<tool_call>\n{\"arguments\": {}}\n</tool_call>")}) {
    auto parsed = parse_assistant_output(text, ToolCallFormat::kHermes);
    EXPECT_TRUE(parsed.calls.empty()) << text;
    EXPECT_EQ(parsed.content, text);
  }
}

// The deltas of a stream, however the text is cut, add up to the whole answer's parse.
TEST(ToolCalls, StreamedDeltasReassembleToTheWholeAnswerHoweverTheTextIsCut) {
  const std::vector<std::pair<ToolCallFormat, std::string>> outputs = {
      {ToolCallFormat::kHermes,
       "I will check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
       "\"Oslo \\\"N\\\"\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": "
       "\"get_time\", \"arguments\": {}}\n</tool_call>"},
      {ToolCallFormat::kHermes,
       "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 12}}\n"
       "</tool_call>"},
      {ToolCallFormat::kHermes, "No call here, only < and <tool and </tool_call> text."},
      {ToolCallFormat::kMistral,
       "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"k\": \"}]\"}}, {\"name\": \"b\", "
       "\"arguments\": {}}]"},
      {ToolCallFormat::kLlama3Json,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": "
       "\"Rome\"}}"},
  };
  for (const auto& [format, text] : outputs) {
    const AssistantMessage whole = parse_assistant_output(text, format);
    for (size_t piece = 1; piece <= text.size(); piece = piece < 8 ? piece + 1 : piece * 2) {
      ToolCallStream stream(format);
      std::string content;
      std::vector<AssistantMessage::Call> calls;
      auto take = [&](AssistantDelta d) {
        content += d.content;
        for (ToolCallDelta& call : d.calls) {
          if (call.header) {
            ASSERT_EQ(call.index, static_cast<int>(calls.size()));
            ASSERT_FALSE(call.name.empty());
            calls.push_back({call.id, call.name, {}});
          }
          ASSERT_LT(call.index, static_cast<int>(calls.size())) << "arguments before a header";
          calls[static_cast<size_t>(call.index)].arguments += call.arguments;
        }
      };
      for (size_t at = 0; at < text.size(); at += piece) take(stream.push(text.substr(at, piece)));
      take(stream.finish());
      ASSERT_EQ(calls.size(), whole.calls.size()) << text << " in pieces of " << piece;
      for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_EQ(calls[i].name, whole.calls[i].name);
        EXPECT_EQ(calls[i].arguments, whole.calls[i].arguments) << text << " / " << piece;
      }
      if (whole.calls.empty()) {
        EXPECT_EQ(content, text) << "in pieces of " << piece;
      } else {
        const std::string trimmed = whole.content.value_or("");
        EXPECT_NE(content.find(trimmed), std::string::npos) << content;
      }
    }
  }
}

// Random text made of the formats' own pieces, cut at random: the stream never fails, its calls
// are those of the whole answer whenever that has any, and text without calls comes back whole.
TEST(ToolCalls, RandomTextCutAtRandomStreamsAsTheWholeAnswerParses) {
  const std::vector<std::string> atoms = {"<tool_call>",
                                          "</tool_call>",
                                          "[TOOL_CALLS]",
                                          "<|python_tag|>",
                                          "{",
                                          "}",
                                          "[",
                                          "]",
                                          "\"name\"",
                                          "\"arguments\"",
                                          "\"parameters\"",
                                          "\"id\"",
                                          ":",
                                          ",",
                                          "\"f\"",
                                          "\"x\\\"y\"",
                                          "12",
                                          "true",
                                          " ",
                                          "\n",
                                          "\\",
                                          "\"",
                                          "<",
                                          "<tool",
                                          "text",
                                          "{\"name\": \"g\", "};
  std::mt19937 rng(7);
  int with_calls = 0;
  for (int iteration = 0; iteration < 3000; ++iteration) {
    const auto format = static_cast<ToolCallFormat>(iteration % 3);
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 24);
    for (int k = 0; k < n; ++k) text += atoms[rng() % atoms.size()];
    if (iteration % 4 == 0) {  // a well-formed call somewhere in it
      const std::string call =
          format == ToolCallFormat::kMistral
              ? R"([TOOL_CALLS][{"name": "f", "arguments": {"a": [1, "}"]}}])"
          : format == ToolCallFormat::kLlama3Json
              ? R"({"name": "f", "parameters": {"a": "]"}})"
              : "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
      text.insert(rng() % (text.size() + 1), call);
    }
    const AssistantMessage whole = parse_assistant_output(text, format);
    ToolCallStream stream(format);
    std::string content;
    std::vector<AssistantMessage::Call> calls;
    auto take = [&](const AssistantDelta& d) {
      content += d.content;
      for (const ToolCallDelta& call : d.calls) {
        if (call.header) calls.push_back({call.id, call.name, {}});
        ASSERT_LT(call.index, static_cast<int>(calls.size()));
        calls[static_cast<size_t>(call.index)].arguments += call.arguments;
      }
    };
    for (size_t at = 0; at < text.size();) {
      const size_t piece = 1 + rng() % 9;
      take(stream.push(text.substr(at, piece)));
      at += piece;
    }
    take(stream.finish());
    if (!whole.calls.empty()) {
      ++with_calls;
      ASSERT_EQ(calls.size(), whole.calls.size()) << text;
      for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_EQ(calls[i].name, whole.calls[i].name) << text;
        EXPECT_EQ(calls[i].arguments, whole.calls[i].arguments) << text;
      }
    } else if (calls.empty()) {
      EXPECT_EQ(content, text);
    }
  }
  EXPECT_GT(with_calls, 300);
}

// A call with long arguments streams in linear time: slices get larger, but still add up to
// exactly the arguments.
TEST(ToolCalls, ALongCallStreamsWhole) {
  std::string value(200000, 'a');
  const std::string text =
      "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"v\": \"" + value + "\"}}\n</tool_call>";
  ToolCallStream stream(ToolCallFormat::kHermes);
  std::string arguments;
  int deltas = 0;
  for (size_t at = 0; at < text.size(); at += 3) {
    for (const ToolCallDelta& d : stream.push(text.substr(at, 3)).calls) {
      arguments += d.arguments;
      ++deltas;
    }
  }
  for (const ToolCallDelta& d : stream.finish().calls) arguments += d.arguments;
  EXPECT_EQ(arguments, "{\"v\": \"" + value + "\"}");
  EXPECT_GT(deltas, 50);
  EXPECT_LT(deltas, 3000);
}

}  // namespace
}  // namespace infergrid
