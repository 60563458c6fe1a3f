// Tool calling for chat completions: OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`
// read and checked; the grammar that makes a model's call well-formed; and the model's output
// turned back into `message.tool_calls` or streamed `delta.tool_calls`.
//
// A model writes calls in its family's format (ChatTemplate::tool_call_format). With
// tool_choice "required" or a named function the whole answer is constrained to calls (the
// named one only) whose arguments follow the tool's JSON schema; with "auto" the grammar is
// lazy: free text until the format's opening marker, constrained calls from there on.
//
// Invariants: ToolCallStream emits a call's header (index, id, name) once, only when the name
// is complete, and then its arguments as consecutive slices of the model's own argument text,
// so the concatenated deltas are exactly the arguments a non-streamed answer reports (both come
// from the same scanner); text that turns out not to be a call is emitted as content, never
// dropped. Never throws.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "model/chat_template.h"

namespace infergrid {

struct ApiError;

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

struct ToolSpec {
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();  // as sent, for the template
  std::vector<std::string> names;
  std::vector<nlohmann::ordered_json> parameters;  // each tool's schema, in declared order
  ToolChoice choice = ToolChoice::kAuto;
  std::string named;  // kNamed: the function
  bool parallel = true;
  // Whether the output is read for calls.
  bool active() const { return !names.empty() && choice != ToolChoice::kNone; }
};

// Reads tools, tool_choice and parallel_tool_calls (the schemas again from raw_body, in their
// declared order). A malformed value is a 400 naming the field.
std::optional<ApiError> parse_tools(const nlohmann::json& body, std::string_view raw_body,
                                    ToolSpec& out);

struct ToolGrammar {
  std::string gbnf;     // empty: no constraint (tool_choice none, or an auto whose schemas
                        // cannot all be enforced: free text, as vLLM does)
  std::string trigger;  // non-empty: lazy, from this text on
};
// Required / named: a schema that cannot be enforced is an error naming the tool.
Result<ToolGrammar> tool_call_grammar(const ToolSpec& spec, ToolCallFormat format);

// "call_" and 24 letters or digits; Mistral's templates require exactly 9 of them.
std::string new_tool_call_id(ToolCallFormat format);

struct ToolCallDelta {
  int index = 0;
  bool header = false;  // the first delta of the call: id and name are set
  std::string id;
  std::string name;
  std::string arguments;  // the next slice of the argument text
};

struct AssistantDelta {
  std::string content;
  std::vector<ToolCallDelta> calls;
  bool empty() const { return content.empty() && calls.empty(); }
};

class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format);
  // The text the model produced since the last call, in order.
  AssistantDelta push(std::string_view text);
  // The end of the output: whatever was held back (a call never finished before its name, a
  // partial marker) as content.
  AssistantDelta finish();
  int n_calls() const { return static_cast<int>(emitted_.size()); }

 private:
  void scan_region(AssistantDelta& out, bool at_end);
  void leave_region(AssistantDelta& out, size_t from);

  ToolCallFormat format_;
  std::vector<std::string_view> triggers_;
  std::string pending_;       // text not yet emitted as content (outside a region) or the region
  bool in_region_ = false;    // pending_ begins with a call marker
  bool done_ = false;         // past the calls: everything else is content
  size_t scanned_bytes_ = 0;  // pending_'s size at the last scan
  struct Emitted {
    std::string id;
    size_t argument_bytes = 0;
  };
  std::vector<Emitted> emitted_;
};

struct AssistantMessage {
  std::optional<std::string> content;  // nullopt: null (only calls)
  struct Call {
    std::string id;
    std::string name;
    std::string arguments;
  };
  std::vector<Call> calls;
};
// A whole answer. Calls whose arguments are not valid JSON make the whole text content, as
// vLLM's parsers do.
AssistantMessage parse_assistant_output(std::string_view text, ToolCallFormat format);

}  // namespace infergrid
