#include "server/tool_calls.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "grammar/json_schema.h"
#include "model/tool_call_markers.h"
#include "server/openai_api.h"

namespace infergrid {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxTools = 128;

bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// --- a scanner for JSON that may still be arriving ------------------------------------------

enum class Scan { kComplete, kIncomplete, kInvalid };

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  return i;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// s[i] is '"'; end: one past the closing quote.
Scan scan_string(std::string_view s, size_t i, size_t& end) {
  for (size_t j = i + 1; j < s.size(); ++j) {
    if (s[j] == '\\') {
      ++j;
    } else if (s[j] == '"') {
      end = j + 1;
      return Scan::kComplete;
    }
  }
  end = s.size();
  return Scan::kIncomplete;
}

// One JSON value at s[i]; end: one past it (the text's end while incomplete). Structure only:
// a complete value is checked by a real parser before it is trusted.
Scan scan_value(std::string_view s, size_t i, size_t& end) {
  end = s.size();
  if (i >= s.size()) return Scan::kIncomplete;
  const char c = s[i];
  if (c == '"') return scan_string(s, i, end);
  if (c == '{' || c == '[') {
    std::vector<char> closers;
    for (size_t j = i; j < s.size(); ++j) {
      const char ch = s[j];
      if (ch == '"') {
        size_t string_end = 0;
        if (scan_string(s, j, string_end) != Scan::kComplete) return Scan::kIncomplete;
        j = string_end - 1;
      } else if (ch == '{') {
        closers.push_back('}');
      } else if (ch == '[') {
        closers.push_back(']');
      } else if (ch == '}' || ch == ']') {
        if (closers.empty() || closers.back() != ch) return Scan::kInvalid;
        closers.pop_back();
        if (closers.empty()) {
          end = j + 1;
          return Scan::kComplete;
        }
      }
    }
    return Scan::kIncomplete;
  }
  size_t j = i;
  while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' ||
                          s[j] == '+' || s[j] == '.')) {
    ++j;
  }
  if (j == i) return Scan::kInvalid;
  end = j;
  return j == s.size() ? Scan::kIncomplete : Scan::kComplete;  // a number may go on
}

// One call object's members as far as they have arrived.
struct CallScan {
  size_t start = 0;  // where the call (its marker, or its object) begins
  std::optional<std::string> name;
  std::string id;
  bool has_arguments = false;
  size_t arguments_begin = 0, arguments_end = 0;
  bool arguments_complete = false;
  bool closed = false;  // the object (and its closing marker) is complete
  size_t end = 0;       // closed: one past it
};

std::optional<std::string> string_value(std::string_view text) {
  auto parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_string()) return std::nullopt;
  return parsed.get<std::string>();
}

// s[i] is '{'. Fills call; end: one past the object when complete.
Scan scan_call_object(std::string_view s, size_t i, CallScan& call, size_t& end) {
  size_t j = skip_ws(s, i + 1);
  end = s.size();
  if (j >= s.size()) return Scan::kIncomplete;
  if (s[j] == '}') {
    end = j + 1;
    return Scan::kComplete;
  }
  for (;;) {
    if (j >= s.size()) return Scan::kIncomplete;
    if (s[j] != '"') return Scan::kInvalid;
    size_t key_end = 0;
    if (scan_string(s, j, key_end) != Scan::kComplete) return Scan::kIncomplete;
    const std::optional<std::string> key = string_value(s.substr(j, key_end - j));
    if (!key) return Scan::kInvalid;
    j = skip_ws(s, key_end);
    if (j >= s.size()) return Scan::kIncomplete;
    if (s[j] != ':') return Scan::kInvalid;
    j = skip_ws(s, j + 1);
    if (j >= s.size()) return Scan::kIncomplete;
    size_t value_end = 0;
    const Scan value = scan_value(s, j, value_end);
    if (value == Scan::kInvalid) return Scan::kInvalid;
    if (*key == "arguments" || *key == "parameters") {
      call.has_arguments = true;
      call.arguments_begin = j;
      call.arguments_end = value_end;
      call.arguments_complete = value == Scan::kComplete;
    } else if (value == Scan::kComplete && (*key == "name" || *key == "id")) {
      auto text = string_value(s.substr(j, value_end - j));
      if (!text) return Scan::kInvalid;
      if (*key == "name") {
        call.name = std::move(*text);
      } else {
        call.id = std::move(*text);
      }
    }
    if (value != Scan::kComplete) return Scan::kIncomplete;
    j = skip_ws(s, value_end);
    if (j >= s.size()) return Scan::kIncomplete;
    if (s[j] == ',') {
      j = skip_ws(s, j + 1);
    } else if (s[j] == '}') {
      end = j + 1;
      return Scan::kComplete;
    } else {
      return Scan::kInvalid;
    }
  }
}

struct RegionScan {
  std::vector<CallScan> calls;
  enum State { kOpen, kClosed, kInvalid } state = kOpen;
  size_t end = 0;  // closed: where the calls end; invalid: where the bad call begins
};

// Scans a call object at s[j] into region; false when the region's state is decided.
bool scan_object_into(std::string_view s, size_t start, size_t j, RegionScan& region, size_t& end) {
  CallScan call;
  call.start = start;
  const Scan scan = scan_call_object(s, j, call, end);
  if (scan == Scan::kInvalid || (scan == Scan::kComplete && !call.name)) {
    if (call.name) region.calls.push_back(std::move(call));
    region.state = RegionScan::kInvalid;
    region.end = start;
    return false;
  }
  if (scan == Scan::kComplete) {
    call.closed = true;
    call.end = end;
  }
  region.calls.push_back(std::move(call));
  if (scan == Scan::kIncomplete) {
    region.state = RegionScan::kOpen;
    return false;
  }
  return true;
}

RegionScan scan_hermes(std::string_view s) {
  RegionScan region;
  size_t j = 0;
  for (;;) {
    j = skip_ws(s, j);
    const std::string_view rest = s.substr(j);
    if (rest.empty() ||
        (!starts_with(rest, kHermesCallOpen) && starts_with(kHermesCallOpen, rest))) {
      return region;  // open: more may come
    }
    if (!starts_with(rest, kHermesCallOpen)) {
      region.state = region.calls.empty() ? RegionScan::kInvalid : RegionScan::kClosed;
      region.end = j;
      return region;
    }
    const size_t start = j;
    j = skip_ws(s, j + kHermesCallOpen.size());
    if (j >= s.size()) {
      CallScan opened;
      opened.start = start;
      region.calls.push_back(std::move(opened));
      return region;
    }
    if (s[j] != '{') {
      region.state = RegionScan::kInvalid;
      region.end = start;
      return region;
    }
    size_t end = 0;
    if (!scan_object_into(s, start, j, region, end)) return region;
    CallScan& call = region.calls.back();
    call.closed = false;  // until its closing marker
    j = skip_ws(s, end);
    const std::string_view after = s.substr(j);
    if (after.empty() ||
        (!starts_with(after, kHermesCallClose) && starts_with(kHermesCallClose, after))) {
      return region;
    }
    if (!starts_with(after, kHermesCallClose)) {
      region.state = RegionScan::kInvalid;
      region.end = start;
      return region;
    }
    j += kHermesCallClose.size();
    call.closed = true;
    call.end = j;
  }
}

RegionScan scan_mistral(std::string_view s) {
  RegionScan region;
  size_t j = skip_ws(s, kMistralCallsOpen.size());
  if (j >= s.size()) return region;
  if (s[j] == '{') {
    size_t end = 0;
    if (scan_object_into(s, 0, j, region, end)) {
      region.state = RegionScan::kClosed;
      region.end = end;
    }
    return region;
  }
  if (s[j] != '[') {
    region.state = RegionScan::kInvalid;
    return region;
  }
  j = skip_ws(s, j + 1);
  for (;;) {
    if (j >= s.size()) return region;
    if (s[j] == ']' && !region.calls.empty()) {
      region.state = RegionScan::kClosed;
      region.end = j + 1;
      return region;
    }
    if (s[j] != '{') {
      region.state = RegionScan::kInvalid;
      region.end = region.calls.empty() ? 0 : j;
      return region;
    }
    size_t end = 0;
    if (!scan_object_into(s, region.calls.empty() ? 0 : j, j, region, end)) return region;
    j = skip_ws(s, end);
    if (j >= s.size()) return region;
    if (s[j] == ',') j = skip_ws(s, j + 1);
  }
}

RegionScan scan_llama3(std::string_view s) {
  RegionScan region;
  size_t j = starts_with(s, kLlamaPythonTag) ? kLlamaPythonTag.size() : 0;
  for (;;) {
    j = skip_ws(s, j);
    if (j >= s.size()) return region;
    if (s[j] != '{') {
      region.state = region.calls.empty() ? RegionScan::kInvalid : RegionScan::kClosed;
      region.end = region.calls.empty() ? 0 : j;
      return region;
    }
    size_t end = 0;
    if (!scan_object_into(s, region.calls.empty() ? 0 : j, j, region, end)) return region;
    if (!region.calls.back().has_arguments) {
      // A JSON answer that happens to have a "name" ({"name": "Ada", "age": 36}) is content:
      // a Llama call always carries its parameters.
      region.state = RegionScan::kInvalid;
      region.end = region.calls.back().start;
      return region;
    }
    j = skip_ws(s, end);
    if (j < s.size() && s[j] == ';') ++j;
  }
}

RegionScan scan_region_text(std::string_view s, ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kMistral:
      return scan_mistral(s);
    case ToolCallFormat::kLlama3Json:
      return scan_llama3(s);
    case ToolCallFormat::kHermes:
      break;
  }
  return scan_hermes(s);
}

bool is_mistral_id(const std::string& id) {
  return id.size() == 9 && std::all_of(id.begin(), id.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c));
         });
}

// --- the grammar ---------------------------------------------------------------------------

// The schema of one call object in the format's key order: name first, so it streams.
ojson call_schema(const ToolSpec& spec, ToolCallFormat format) {
  const char* arguments_key = format == ToolCallFormat::kLlama3Json ? "parameters" : "arguments";
  ojson alternatives = ojson::array();
  for (size_t i = 0; i < spec.names.size(); ++i) {
    if (spec.choice == ToolChoice::kNamed && spec.names[i] != spec.named) continue;
    ojson properties = ojson::object();
    properties["name"] = {{"const", spec.names[i]}};
    properties[arguments_key] = spec.parameters[i];
    alternatives.push_back({{"type", "object"},
                            {"properties", std::move(properties)},
                            {"required", ojson::array({"name", arguments_key})},
                            {"additionalProperties", false}});
  }
  if (alternatives.size() == 1) return alternatives[0];
  return {{"anyOf", std::move(alternatives)}};
}

std::string renamed_root(const std::string& gbnf, const char* name) {
  // json_schema_to_gbnf's first line is the start rule, and no other rule name begins "root".
  return std::string(name) + gbnf.substr(std::string_view("root").size());
}

}  // namespace

std::optional<ApiError> parse_tools(const json& body, std::string_view raw_body, ToolSpec& out) {
  auto tools = body.find("tools");
  if (tools != body.end() && !tools->is_null()) {
    if (!tools->is_array()) {
      return api_error(400, "'tools' must be an array of function tools", "tools");
    }
    if (tools->size() > kMaxTools) {
      return api_error(400, fmt::format("'tools' has more than {} tools", kMaxTools), "tools");
    }
    // Again in the body's own key order: the template prints the tools (tojson keeps order)
    // and the grammar writes arguments in the schema's property order.
    auto read_again = ordered_body_member(raw_body, {"tools"}, "tools");
    if (auto* error = std::get_if<ApiError>(&read_again)) return *error;
    const ojson& ordered = std::get<ojson>(read_again);
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& tool = (*tools)[i];
      const std::string where = fmt::format("tools[{}]", i);
      if (!tool.is_object())
        return api_error(400, fmt::format("'{}' must be an object", where), "tools");
      auto type = tool.find("type");
      if (type == tool.end() || *type != "function") {
        return api_error(400, fmt::format("'{}.type' must be \"function\"", where), "tools");
      }
      auto function = tool.find("function");
      if (function == tool.end() || !function->is_object()) {
        return api_error(400, fmt::format("'{}.function' must be an object", where), "tools");
      }
      auto name = function->find("name");
      if (name == function->end() || !name->is_string() ||
          !valid_function_name(name->get<std::string>())) {
        return api_error(400,
                         fmt::format("'{}.function.name' must be 1 to 64 letters, digits, '_' "
                                     "or '-'",
                                     where),
                         "tools");
      }
      const std::string function_name = name->get<std::string>();
      if (std::find(out.names.begin(), out.names.end(), function_name) != out.names.end()) {
        return api_error(
            400, fmt::format("'{}.function.name' '{}' is declared twice", where, function_name),
            "tools");
      }
      auto description = function->find("description");
      if (description != function->end() && !description->is_null() && !description->is_string()) {
        return api_error(400, fmt::format("'{}.function.description' must be a string", where),
                         "tools");
      }
      auto strict = function->find("strict");
      if (strict != function->end() && !strict->is_null() && !strict->is_boolean()) {
        return api_error(400, fmt::format("'{}.function.strict' must be a boolean", where),
                         "tools");
      }
      auto parameters = function->find("parameters");
      ojson schema = {{"type", "object"}};
      if (parameters != function->end() && !parameters->is_null()) {
        if (!parameters->is_object()) {
          return api_error(
              400, fmt::format("'{}.function.parameters' must be a JSON Schema object", where),
              "tools");
        }
        schema = ordered[i]["function"]["parameters"];
      }
      out.names.push_back(function_name);
      out.parameters.push_back(std::move(schema));
      out.tools.push_back(ordered[i]);
    }
  }

  auto choice = body.find("tool_choice");
  if (choice != body.end() && !choice->is_null()) {
    if (choice->is_string()) {
      const std::string mode = choice->get<std::string>();
      if (mode == "none") {
        out.choice = ToolChoice::kNone;
      } else if (mode == "auto") {
        out.choice = ToolChoice::kAuto;
      } else if (mode == "required") {
        out.choice = ToolChoice::kRequired;
      } else {
        return api_error(400,
                         fmt::format("'tool_choice' '{}' is not one of 'none', 'auto', "
                                     "'required' or a function",
                                     mode.substr(0, 40)),
                         "tool_choice");
      }
    } else if (choice->is_object()) {
      auto type = choice->find("type");
      auto function = choice->find("function");
      if (type == choice->end() || *type != "function" || function == choice->end() ||
          !function->is_object() || !function->contains("name") ||
          !(*function)["name"].is_string()) {
        return api_error(400,
                         "'tool_choice' must be {\"type\": \"function\", \"function\": "
                         "{\"name\": ...}}",
                         "tool_choice");
      }
      out.choice = ToolChoice::kNamed;
      out.named = (*function)["name"].get<std::string>();
      if (std::find(out.names.begin(), out.names.end(), out.named) == out.names.end()) {
        return api_error(400,
                         fmt::format("'tool_choice' names the function '{}', which is not in "
                                     "'tools'",
                                     out.named.substr(0, 64)),
                         "tool_choice");
      }
    } else {
      return api_error(400, "'tool_choice' must be a string or an object", "tool_choice");
    }
    if ((out.choice == ToolChoice::kRequired) && out.names.empty()) {
      return api_error(400, "'tool_choice' \"required\" needs 'tools'", "tool_choice");
    }
  }

  auto parallel = body.find("parallel_tool_calls");
  if (parallel != body.end() && !parallel->is_null()) {
    if (!parallel->is_boolean()) {
      return api_error(400, "'parallel_tool_calls' must be a boolean", "parallel_tool_calls");
    }
    out.parallel = parallel->get<bool>();
  }
  return std::nullopt;
}

Result<ToolGrammar> tool_call_grammar(const ToolSpec& spec, ToolCallFormat format) {
  ToolGrammar out;
  if (!spec.active()) return out;
  // Llama 3.1's templates refuse more than one call per turn.
  const bool parallel = spec.parallel && format != ToolCallFormat::kLlama3Json;
  ojson schema = call_schema(spec, format);
  if (format == ToolCallFormat::kMistral) {
    schema = {{"type", "array"}, {"items", std::move(schema)}, {"minItems", 1}};
    if (!parallel) schema["maxItems"] = 1;
  }
  auto call = json_schema_to_gbnf(schema);
  if (!call.is_ok()) {
    if (spec.choice == ToolChoice::kAuto) return out;  // free text, unconstrained calls
    const std::string& who = spec.choice == ToolChoice::kNamed ? spec.named : spec.names.front();
    return make_error(StatusCode::kInvalidArgument,
                      "the parameters of the tools (the function '{}' or another) cannot be "
                      "enforced: {}",
                      who, call.status().message());
  }
  switch (format) {
    case ToolCallFormat::kHermes:
      out.gbnf = "root ::= root-block" + std::string(parallel ? " ( \"\\n\" root-block )*" : "") +
                 "\nroot-block ::= \"<tool_call>\\n\" root-call \"\\n</tool_call>\"\n" +
                 renamed_root(*call, "root-call");
      out.trigger = kHermesCallOpen;
      break;
    case ToolCallFormat::kMistral:
      out.gbnf = "root ::= \"[TOOL_CALLS]\" root-calls\n" + renamed_root(*call, "root-calls");
      out.trigger = kMistralCallsOpen;
      break;
    case ToolCallFormat::kLlama3Json:
      out.gbnf = *call;
      out.trigger = "{\"name\"";
      break;
  }
  if (spec.choice != ToolChoice::kAuto) out.trigger.clear();
  return out;
}

std::string new_tool_call_id(ToolCallFormat format) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  const size_t n = format == ToolCallFormat::kMistral ? 9 : 24;
  std::string id = format == ToolCallFormat::kMistral ? "" : "call_";
  for (size_t i = 0; i < n; ++i) id += kAlphabet[pick(rng)];
  return id;
}

ToolCallStream::ToolCallStream(ToolCallFormat format) : format_(format) {
  switch (format) {
    case ToolCallFormat::kHermes:
      triggers_ = {kHermesCallOpen};
      break;
    case ToolCallFormat::kMistral:
      triggers_ = {kMistralCallsOpen};
      break;
    case ToolCallFormat::kLlama3Json:
      triggers_ = {kLlamaPythonTag, "{\"name\""};
      break;
  }
}

AssistantDelta ToolCallStream::push(std::string_view text) {
  AssistantDelta out;
  pending_ += text;
  if (done_) {
    out.content = std::move(pending_);
    pending_.clear();
    return out;
  }
  if (!in_region_) {
    size_t first = std::string::npos;
    for (std::string_view trigger : triggers_) first = std::min(first, pending_.find(trigger));
    if (first == std::string::npos) {
      // Hold back the longest end that may begin a marker.
      size_t hold = 0;
      for (std::string_view trigger : triggers_) {
        for (size_t k = std::min(trigger.size() - 1, pending_.size()); k > hold; --k) {
          if (pending_.compare(pending_.size() - k, k, trigger.substr(0, k)) == 0) {
            hold = k;
            break;
          }
        }
      }
      out.content = pending_.substr(0, pending_.size() - hold);
      pending_.erase(0, pending_.size() - hold);
      return out;
    }
    out.content = pending_.substr(0, first);
    pending_.erase(0, first);
    in_region_ = true;
  }
  // Each scan reads the region from its start; past a few KB it is read again only once it has
  // grown by an eighth, so a long call costs linear time, not quadratic (its deltas just come
  // in larger slices).
  constexpr size_t kRescanEveryTokenBytes = 4096;
  if (pending_.size() > kRescanEveryTokenBytes &&
      pending_.size() < scanned_bytes_ + scanned_bytes_ / 8) {
    return out;
  }
  scanned_bytes_ = pending_.size();
  scan_region(out, false);
  return out;
}

void ToolCallStream::leave_region(AssistantDelta& out, size_t from) {
  if (from < pending_.size()) out.content += pending_.substr(from);
  pending_.clear();
  in_region_ = false;
  done_ = true;
}

void ToolCallStream::scan_region(AssistantDelta& out, bool at_end) {
  const RegionScan region = scan_region_text(pending_, format_);
  for (size_t i = 0; i < region.calls.size(); ++i) {
    const CallScan& call = region.calls[i];
    if (!call.name) break;
    if (i >= emitted_.size()) {
      if (!call.has_arguments && !call.closed) break;
      if (region.state == RegionScan::kInvalid && call.start == region.end) break;
      Emitted e;
      e.id = format_ == ToolCallFormat::kMistral && is_mistral_id(call.id)
                 ? call.id
                 : new_tool_call_id(format_);
      out.calls.push_back({static_cast<int>(i), true, e.id, *call.name, ""});
      emitted_.push_back(std::move(e));
    }
    Emitted& e = emitted_[i];
    std::string slice;
    if (call.has_arguments) {
      const size_t end = call.arguments_complete ? call.arguments_end : pending_.size();
      const size_t from = call.arguments_begin + e.argument_bytes;
      if (end > from) {
        slice = pending_.substr(from, end - from);
        e.argument_bytes = end - call.arguments_begin;
      }
    } else if (call.closed && e.argument_bytes == 0) {
      slice = "{}";  // a call without arguments
      e.argument_bytes = 2;
    }
    if (slice.empty()) continue;
    if (!out.calls.empty() && out.calls.back().index == static_cast<int>(i)) {
      out.calls.back().arguments += slice;
    } else {
      out.calls.push_back({static_cast<int>(i), false, {}, {}, std::move(slice)});
    }
  }
  if (region.state == RegionScan::kClosed) return leave_region(out, region.end);
  if (region.state == RegionScan::kInvalid) {
    // A call already announced keeps what it streamed; the text after it is content.
    size_t from = region.end;
    for (size_t i = 0; i < region.calls.size() && i < emitted_.size(); ++i) {
      if (region.calls[i].start == region.end && region.calls[i].has_arguments) {
        from = region.calls[i].arguments_begin + emitted_[i].argument_bytes;
      }
    }
    return leave_region(out, from);
  }
  if (!at_end) return;
  // The output ended inside the region: what never became a call is content.
  const size_t k = emitted_.size();
  if (k < region.calls.size()) return leave_region(out, region.calls[k].start);
  if (k == 0) return leave_region(out, 0);
  const CallScan& last = region.calls[k - 1];
  if (last.closed && last.end < pending_.size() &&
      pending_.find_first_not_of(" \t\r\n", last.end) != std::string::npos) {
    return leave_region(out, last.end);
  }
  leave_region(out, pending_.size());
}

AssistantDelta ToolCallStream::finish() {
  AssistantDelta out;
  if (in_region_ && !done_) {
    scan_region(out, true);
  } else {
    out.content = std::move(pending_);
  }
  pending_.clear();
  done_ = true;
  return out;
}

AssistantMessage parse_assistant_output(std::string_view text, ToolCallFormat format) {
  ToolCallStream stream(format);
  AssistantDelta deltas[2] = {stream.push(text), stream.finish()};
  std::string content;
  AssistantMessage out;
  for (AssistantDelta& d : deltas) {
    content += d.content;
    for (ToolCallDelta& call : d.calls) {
      if (call.header) out.calls.push_back({call.id, call.name, {}});
      out.calls[static_cast<size_t>(call.index)].arguments += call.arguments;
    }
  }
  const bool all_valid = std::all_of(out.calls.begin(), out.calls.end(), [](const auto& call) {
    auto args = json::parse(call.arguments, nullptr, false);
    return !args.is_discarded() && args.is_object();
  });
  if (out.calls.empty() || !all_valid) {
    out.calls.clear();
    out.content = std::string(text);
    return out;
  }
  const size_t first = content.find_first_not_of(" \t\r\n");
  if (first != std::string::npos) {
    const size_t last = content.find_last_not_of(" \t\r\n");
    out.content = content.substr(first, last - first + 1);
  }
  return out;
}

}  // namespace infergrid
