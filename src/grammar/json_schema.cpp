#include "grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "grammar/gbnf_pieces.h"
#include "grammar/schema_pattern.h"

namespace infergrid {

namespace {

using ojson = nlohmann::ordered_json;
using gbnf::gbnf_alternatives;
using gbnf::gbnf_literal;
using gbnf::integer_range;
using gbnf::unsigned_range;

using gbnf::kMaxDepth;
using gbnf::kMaxRepeat;
// Unbounded integers stop at 18 digits: every value still validates, and a model cannot spend
// its whole budget on one number.
constexpr int64_t kIntegerCap = 999999999999999999;

const std::map<std::string, std::string>& primitives() {
  static const std::map<std::string, std::string> kRules = {
      {"space", R"(( " " | "\n" [ \t]{0,20} )?)"},
      {"char", R"([^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ))"},
      {"string", R"("\"" char* "\"" space)"},
      {"integer", R"("-"? ( "0" | [1-9] [0-9]{0,17} ) space)"},
      {"number",
       R"("-"? ( "0" | [1-9] [0-9]{0,17} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? space)"},
      {"boolean", R"(( "true" | "false" ) space)"},
      {"null", R"("null" space)"},
      {"value", "object | array | string | number | boolean | null"},
      {"object",
       R"("{" space ( string ":" space value ( "," space string ":" space value )* )? "}" space)"},
      {"array", R"("[" space ( value ( "," space value )* )? "]" space)"},
      {"day28", R"("0" [1-9] | "1" [0-9] | "2" [0-8])"},
      {"day30", R"(day28 | "29" | "30")"},
      {"day31", R"(day30 | "31")"},
      // Year 0000 is valid RFC 3339 but not a date most validators (Python's, for one) accept.
      {"year", R"([1-9] [0-9]{3} | "0" ( [1-9] [0-9]{2} | "0" ( [1-9] [0-9] | "0" [1-9] ) ))"},
      {"date",
       R"(year "-" ( ( "0" [13578] | "1" [02] ) "-" day31 | ( "0" [469] | "11" ) "-" day30 | "02" "-" day28 ))"},
      {"time",
       R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))"},
      {"date-time", R"(date "T" time)"},
      {"uuid", R"([0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12})"},
  };
  return kRules;
}

// Which primitives each primitive uses, so defining one defines what it needs.
const std::map<std::string, std::vector<std::string>>& primitive_uses() {
  static const std::map<std::string, std::vector<std::string>> kUses = {
      {"string", {"char", "space"}},
      {"integer", {"space"}},
      {"number", {"space"}},
      {"boolean", {"space"}},
      {"null", {"space"}},
      {"value", {"object", "array", "string", "number", "boolean", "null"}},
      {"object", {"space", "string", "value"}},
      {"array", {"space", "value"}},
      {"day30", {"day28"}},
      {"day31", {"day30"}},
      {"date", {"year", "day28", "day30", "day31"}},
      {"date-time", {"date", "time"}},
  };
  return kUses;
}

bool is_annotation_or_structural(const std::string& key) {
  static const std::set<std::string> kIgnored = {
      "$schema",  "$id",          "$comment",         "$defs",           "definitions",
      "title",    "description",  "examples",         "default",         "deprecated",
      "readOnly", "writeOnly",    "contentMediaType", "contentEncoding", "$anchor",
      "strict",   "discriminator"};
  return kIgnored.count(key) > 0;
}

class SchemaConverter {
 public:
  explicit SchemaConverter(const ojson& root) : root_(root) {}

  Result<std::string> convert() {
    IG_ASSIGN_OR_RETURN(std::string expr, visit(root_, "root", "#", 0));
    std::string out = "root ::= " + expr + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

 private:
  Status refuse(const std::string& where, std::string_view what) const {
    return make_error(StatusCode::kInvalidArgument, "schema at '{}': {}", where, what);
  }

  std::string primitive(const std::string& name) {
    if (defined_.insert(name).second) {
      rules_.emplace_back(name, primitives().at(name));
      auto uses = primitive_uses().find(name);
      if (uses != primitive_uses().end()) {
        for (const std::string& used : uses->second) primitive(used);
      }
    }
    return name;
  }

  std::string unique_name(const std::string& hint) {
    std::string base;
    for (char c : hint) {
      base +=
          std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
    }
    if (base.empty() || base.size() > 48) base = base.empty() ? "rule" : base.substr(0, 48);
    // Names beginning with "root" are left to callers that wrap this grammar in their own rules.
    if (base.rfind("root", 0) == 0) base = "r-" + base;
    std::string name = base;
    for (int i = 1; defined_.count(name) || primitives().count(name); ++i) {
      name = fmt::format("{}-{}", base, i);
    }
    defined_.insert(name);
    return name;
  }

  std::string add_rule(const std::string& hint, std::string body) {
    std::string name = unique_name(hint);
    rules_.emplace_back(name, std::move(body));
    return name;
  }

  std::string literal(const ojson& value) {
    return gbnf_literal(value.dump()) + " " + primitive("space");
  }

  Result<const ojson*> resolve(const std::string& ref, const std::string& where) const {
    if (ref.empty() || ref[0] != '#') {
      return refuse(where, fmt::format("$ref '{}' points outside this schema", ref));
    }
    const ojson* node = &root_;
    std::string pointer = ref.substr(1);
    size_t at = 0;
    while (at < pointer.size()) {
      if (pointer[at] != '/') return refuse(where, fmt::format("$ref '{}' is malformed", ref));
      const size_t next = pointer.find('/', at + 1);
      const size_t end = next == std::string::npos ? pointer.size() : next;
      // RFC 6901 unescaping in one pass, so "~01" is "~1" and not "/".
      std::string token;
      for (size_t i = at + 1; i < end; ++i) {
        if (pointer[i] == '~' && i + 1 < end && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
          token.push_back(pointer[i + 1] == '0' ? '~' : '/');
          ++i;
        } else {
          token.push_back(pointer[i]);
        }
      }
      if (node->is_object() && node->contains(token)) {
        node = &(*node)[token];
      } else if (node->is_array() && !token.empty() && token.size() <= 9 &&
                 token.find_first_not_of("0123456789") == std::string::npos &&
                 std::stoull(token) < node->size()) {
        node = &(*node)[std::stoull(token)];
      } else {
        return refuse(where, fmt::format("$ref '{}' points at nothing", ref));
      }
      at = next == std::string::npos ? pointer.size() : next;
    }
    return node;
  }

  Result<std::string> visit(const ojson& schema, const std::string& hint, const std::string& where,
                            int depth) {
    if (depth > kMaxDepth) return refuse(where, "nested too deeply");
    if (schema.is_boolean()) {
      if (schema.get<bool>()) return primitive("value");
      return refuse(where, "the schema false matches nothing");
    }
    if (!schema.is_object()) return refuse(where, "a schema must be an object or a boolean");
    static const std::set<std::string> kRefused = {"not",
                                                   "if",
                                                   "then",
                                                   "else",
                                                   "dependentRequired",
                                                   "dependentSchemas",
                                                   "dependencies",
                                                   "patternProperties",
                                                   "propertyNames",
                                                   "unevaluatedProperties",
                                                   "unevaluatedItems",
                                                   "contains",
                                                   "minContains",
                                                   "maxContains",
                                                   "$dynamicRef",
                                                   "$recursiveRef"};
    for (const auto& [key, value] : schema.items()) {
      if (kRefused.count(key)) return refuse(where, fmt::format("'{}' is not supported", key));
    }
    if (auto unique = schema.find("uniqueItems"); unique != schema.end() && *unique != false) {
      return refuse(where, "'uniqueItems' is not supported");
    }
    if (auto ref = schema.find("$ref"); ref != schema.end()) {
      if (!ref->is_string()) return refuse(where, "'$ref' must be a string");
      const std::string target = ref->get<std::string>();
      auto named = ref_rules_.find(target);
      if (named != ref_rules_.end()) return named->second;
      IG_ASSIGN_OR_RETURN(const ojson* node, resolve(target, where));
      // Named before it is visited, so a recursive reference finds it.
      const size_t slash = target.rfind('/');
      const std::string name = unique_name(slash == std::string::npos || slash + 1 == target.size()
                                               ? "ref"
                                               : target.substr(slash + 1));
      ref_rules_.emplace(target, name);
      const size_t index = rules_.size();
      rules_.emplace_back(name, "");
      IG_ASSIGN_OR_RETURN(std::string body, visit(*node, name, target, depth + 1));
      rules_[index].second = std::move(body);
      return name;
    }
    IG_ASSIGN_OR_RETURN(std::string expr, visit_constraints(schema, hint, where, depth));
    if (auto nullable = schema.find("nullable"); nullable != schema.end() && *nullable == true) {
      return "( " + expr + " | " + primitive("null") + " )";
    }
    return expr;
  }

  Result<std::string> visit_constraints(const ojson& schema, const std::string& hint,
                                        const std::string& where, int depth) {
    if (auto c = schema.find("const"); c != schema.end()) return literal(*c);
    if (auto e = schema.find("enum"); e != schema.end()) {
      if (!e->is_array() || e->empty()) return refuse(where, "'enum' must be a non-empty array");
      std::vector<std::string> items;
      for (const ojson& v : *e) items.push_back(literal(v));
      return gbnf_alternatives(items);
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto it = schema.find(key);
      if (it == schema.end()) continue;
      if (!it->is_array() || it->empty()) {
        return refuse(where, fmt::format("'{}' must be a non-empty array", key));
      }
      for (const auto& [k, v] : schema.items()) {
        if (k != key && k != "nullable" && !is_annotation_or_structural(k)) {
          return refuse(where, fmt::format("'{}' beside '{}' is not supported", k, key));
        }
      }
      std::vector<std::string> items;
      for (size_t i = 0; i < it->size(); ++i) {
        IG_ASSIGN_OR_RETURN(
            std::string item,
            visit((*it)[i], hint, fmt::format("{}/{}/{}", where, key, i), depth + 1));
        items.push_back(std::move(item));
      }
      return gbnf_alternatives(items);
    }
    if (auto all = schema.find("allOf"); all != schema.end()) {
      IG_ASSIGN_OR_RETURN(ojson merged, merge_all_of(schema, where));
      return visit(merged, hint, where, depth + 1);
    }

    std::vector<std::string> types;
    if (auto t = schema.find("type"); t != schema.end()) {
      if (t->is_string()) {
        types.push_back(t->get<std::string>());
      } else if (t->is_array() && !t->empty()) {
        for (const ojson& item : *t) {
          if (!item.is_string()) return refuse(where, "'type' must hold strings");
          types.push_back(item.get<std::string>());
        }
      } else {
        return refuse(where, "'type' must be a string or a non-empty array of strings");
      }
    } else if (schema.contains("properties") || schema.contains("required") ||
               schema.contains("additionalProperties")) {
      types.push_back("object");
    } else if (schema.contains("items") || schema.contains("prefixItems")) {
      types.push_back("array");
    } else if (schema.contains("pattern") || schema.contains("minLength") ||
               schema.contains("maxLength") || schema.contains("format")) {
      types.push_back("string");
    } else if (schema.contains("minimum") || schema.contains("maximum")) {
      types.push_back("number");
    } else {
      return primitive("value");
    }
    std::vector<std::string> items;
    for (const std::string& type : types) {
      IG_ASSIGN_OR_RETURN(std::string item, visit_type(schema, type, hint, where, depth));
      items.push_back(std::move(item));
    }
    return gbnf_alternatives(items);
  }

  Result<ojson> merge_all_of(const ojson& schema, const std::string& where) {
    ojson merged = ojson::object();
    merged["type"] = "object";
    merged["properties"] = ojson::object();
    merged["required"] = ojson::array();
    std::vector<const ojson*> parts;
    for (const auto& [k, v] : schema.items()) {
      if (k != "allOf" && !is_annotation_or_structural(k)) parts.push_back(&v);
    }
    if (!parts.empty()) {
      // Sibling keywords form one more part.
      ojson siblings = ojson::object();
      for (const auto& [k, v] : schema.items()) {
        if (k != "allOf") siblings[k] = v;
      }
      ojson wrapped = ojson::array();
      wrapped.push_back(siblings);
      for (const ojson& part : schema["allOf"]) wrapped.push_back(part);
      ojson copy = ojson::object();
      copy["allOf"] = wrapped;
      return merge_all_of(copy, where);
    }
    const ojson& list = schema["allOf"];
    if (!list.is_array() || list.empty()) return refuse(where, "'allOf' must be a non-empty array");
    if (list.size() == 1) return list[0];
    for (size_t i = 0; i < list.size(); ++i) {
      const ojson* part = &list[i];
      const std::string part_where = fmt::format("{}/allOf/{}", where, i);
      if (part->is_object() && part->contains("$ref")) {
        const ojson& ref = (*part)["$ref"];
        if (!ref.is_string()) return refuse(part_where, "'$ref' must be a string");
        IG_ASSIGN_OR_RETURN(part, resolve(ref.get<std::string>(), part_where));
      }
      if (!part->is_object()) return refuse(part_where, "'allOf' of non-object schemas");
      for (const auto& [k, v] : part->items()) {
        if (k == "properties" && v.is_object()) {
          for (const auto& [name, property] : v.items()) {
            if (merged["properties"].contains(name)) {
              return refuse(part_where,
                            fmt::format("'allOf' constrains property '{}' twice", name));
            }
            merged["properties"][name] = property;
          }
        } else if (k == "required" && v.is_array()) {
          for (const ojson& name : v) merged["required"].push_back(name);
        } else if (k == "type" && v == "object") {
        } else if (k == "additionalProperties" && v == false) {
        } else if (!is_annotation_or_structural(k)) {
          return refuse(part_where, fmt::format("'{}' inside 'allOf' is not supported (only "
                                                "object properties and required merge)",
                                                k));
        }
      }
    }
    return merged;
  }

  Result<std::string> visit_type(const ojson& schema, const std::string& type,
                                 const std::string& hint, const std::string& where, int depth) {
    if (type == "string") return string_expression(schema, where);
    if (type == "integer") return integer_expression(schema, where);
    if (type == "number") return number_expression(schema, where);
    if (type == "boolean") return primitive("boolean");
    if (type == "null") return primitive("null");
    if (type == "object") return object_expression(schema, hint, where, depth);
    if (type == "array") return array_expression(schema, hint, where, depth);
    return refuse(where, fmt::format("unknown type '{}'", type));
  }

  Result<std::optional<int64_t>> read_count(const ojson& schema, const char* key,
                                            const std::string& where) {
    auto it = schema.find(key);
    if (it == schema.end()) return std::optional<int64_t>();
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return refuse(where, fmt::format("'{}' must be a non-negative integer", key));
    }
    if (it->get<int64_t>() > kMaxRepeat) {
      return refuse(where, fmt::format("'{}' over {} is not supported", key, kMaxRepeat));
    }
    return std::optional<int64_t>(it->get<int64_t>());
  }

  static std::string repeat_suffix(int64_t min, std::optional<int64_t> max) {
    if (!max) return min == 0 ? "*" : fmt::format("{{{},}}", min);
    if (min == *max) return fmt::format("{{{}}}", min);
    return fmt::format("{{{},{}}}", min, *max);
  }

  Result<std::string> string_expression(const ojson& schema, const std::string& where) {
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> min_length, read_count(schema, "minLength", where));
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> max_length, read_count(schema, "maxLength", where));
    const std::string quote = R"("\"")";
    std::string format;
    if (auto f = schema.find("format"); f != schema.end() && f->is_string()) {
      format = f->get<std::string>();
      if (format != "date" && format != "time" && format != "date-time" && format != "uuid") {
        format.clear();  // an annotation only, as JSON Schema's default vocabulary has it
      }
    }
    const bool has_pattern = schema.contains("pattern");
    if ((!format.empty() || has_pattern) && (min_length || max_length)) {
      return refuse(where, "'minLength' or 'maxLength' together with a pattern or format");
    }
    if (!format.empty() && has_pattern) return refuse(where, "'pattern' together with 'format'");
    if (!format.empty()) {
      return quote + " " + primitive(format) + " " + quote + " " + primitive("space");
    }
    if (has_pattern) {
      const ojson& pattern = schema["pattern"];
      if (!pattern.is_string()) return refuse(where, "'pattern' must be a string");
      primitive("char");
      IG_ASSIGN_OR_RETURN(std::string body, pattern_to_gbnf(pattern.get<std::string>(), where));
      return quote + " " + add_rule("pattern", body) + " " + quote + " " + primitive("space");
    }
    if (!min_length && !max_length) return primitive("string");
    const int64_t min = min_length.value_or(0);
    if (max_length && *max_length < min) return refuse(where, "'maxLength' below 'minLength'");
    return quote + " " + primitive("char") + repeat_suffix(min, max_length) + " " + quote + " " +
           primitive("space");
  }

  // Reads a numeric bound; `exclusive` says whether it came from exclusiveMinimum/Maximum.
  Result<std::optional<double>> bound(const ojson& schema, const char* inclusive_key,
                                      const char* exclusive_key, bool& exclusive,
                                      const std::string& where) {
    std::optional<double> value;
    exclusive = false;
    if (auto it = schema.find(inclusive_key); it != schema.end()) {
      if (!it->is_number())
        return refuse(where, fmt::format("'{}' must be a number", inclusive_key));
      value = it->get<double>();
    }
    if (auto it = schema.find(exclusive_key); it != schema.end()) {
      if (it->is_boolean()) {  // draft 4: a flag on the inclusive bound
        exclusive = it->get<bool>() && value.has_value();
      } else if (it->is_number()) {
        const double v = it->get<double>();
        const bool is_min = std::string_view(inclusive_key) == "minimum";
        if (!value || (is_min ? v >= *value : v <= *value)) {
          value = v;
          exclusive = true;
        }
      } else {
        return refuse(where, fmt::format("'{}' must be a number", exclusive_key));
      }
    }
    if (value && std::abs(*value) > static_cast<double>(kIntegerCap)) {
      return refuse(where, fmt::format("'{}' beyond 18 digits is not supported", inclusive_key));
    }
    return value;
  }

  Status check_multiple_of(const ojson& schema, const std::string& where, bool integer) {
    auto it = schema.find("multipleOf");
    if (it == schema.end()) return Status::ok();
    if (integer && it->is_number() && it->get<double>() == 1.0) return Status::ok();
    return refuse(where, "'multipleOf' is not supported");
  }

  Result<std::string> integer_expression(const ojson& schema, const std::string& where) {
    IG_RETURN_IF_ERROR(check_multiple_of(schema, where, true));
    bool lo_exclusive = false;
    bool hi_exclusive = false;
    IG_ASSIGN_OR_RETURN(auto lo, bound(schema, "minimum", "exclusiveMinimum", lo_exclusive, where));
    IG_ASSIGN_OR_RETURN(auto hi, bound(schema, "maximum", "exclusiveMaximum", hi_exclusive, where));
    if (!lo && !hi) return primitive("integer");
    int64_t low = -kIntegerCap;
    int64_t high = kIntegerCap;
    if (lo)
      low = lo_exclusive ? static_cast<int64_t>(std::floor(*lo)) + 1
                         : static_cast<int64_t>(std::ceil(*lo));
    if (hi)
      high = hi_exclusive ? static_cast<int64_t>(std::ceil(*hi)) - 1
                          : static_cast<int64_t>(std::floor(*hi));
    if (low > high) return refuse(where, "no integer lies within its bounds");
    return integer_range(low, high) + " " + primitive("space");
  }

  Result<std::string> number_expression(const ojson& schema, const std::string& where) {
    IG_RETURN_IF_ERROR(check_multiple_of(schema, where, false));
    bool lo_exclusive = false;
    bool hi_exclusive = false;
    IG_ASSIGN_OR_RETURN(auto lo, bound(schema, "minimum", "exclusiveMinimum", lo_exclusive, where));
    IG_ASSIGN_OR_RETURN(auto hi, bound(schema, "maximum", "exclusiveMaximum", hi_exclusive, where));
    if (!lo && !hi) return primitive("number");
    if (lo_exclusive || hi_exclusive) {
      return refuse(where,
                    "exclusive bounds on a number are not supported (on an integer they are)");
    }
    for (const auto& b : {lo, hi}) {
      if (b && *b != std::floor(*b)) {
        return refuse(where, fmt::format("the bound {} on a number is not supported (only "
                                         "whole-number bounds are)",
                                         *b));
      }
    }
    const int64_t low = lo ? static_cast<int64_t>(*lo) : -kIntegerCap;
    const int64_t high = hi ? static_cast<int64_t>(*hi) : kIntegerCap;
    if (low > high) return refuse(where, "no number lies within its bounds");
    const std::string fraction = R"(( "." [0-9]{1,15} )?)";
    const std::string zeros = R"(( "." "0"{1,15} )?)";
    // |value| in [a, b] with a fractional part only below b.
    auto magnitude = [&](int64_t a, int64_t b) {
      std::vector<std::string> parts;
      if (a <= b - 1) parts.push_back(unsigned_range(a, b - 1) + " " + fraction);
      parts.push_back(gbnf_literal(std::to_string(b)) + " " + zeros);
      return gbnf_alternatives(parts);
    };
    std::vector<std::string> parts;
    if (low < 0) parts.push_back("\"-\" " + magnitude(high < 0 ? -high : 0, -low));
    if (high >= 0) parts.push_back(magnitude(std::max<int64_t>(low, 0), high));
    return gbnf_alternatives(parts) + " " + primitive("space");
  }

  Result<std::string> object_expression(const ojson& schema, const std::string& hint,
                                        const std::string& where, int depth) {
    struct Property {
      std::string name;
      const ojson* schema;
      bool required;
    };
    static const ojson kAnything = true;
    std::vector<Property> properties;
    std::set<std::string> required;
    if (auto r = schema.find("required"); r != schema.end()) {
      if (!r->is_array()) return refuse(where, "'required' must be an array of strings");
      for (const ojson& name : *r) {
        if (!name.is_string()) return refuse(where, "'required' must be an array of strings");
        required.insert(name.get<std::string>());
      }
    }
    if (auto p = schema.find("properties"); p != schema.end()) {
      if (!p->is_object()) return refuse(where, "'properties' must be an object");
      for (const auto& [name, property] : p->items()) {
        properties.push_back({name, &property, required.count(name) > 0});
      }
    }
    for (const std::string& name : required) {
      const bool listed = std::any_of(properties.begin(), properties.end(),
                                      [&](const Property& p) { return p.name == name; });
      if (!listed) properties.push_back({name, &kAnything, true});
    }
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> min_properties,
                        read_count(schema, "minProperties", where));
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> max_properties,
                        read_count(schema, "maxProperties", where));
    const std::string open = R"("{" )" + primitive("space");
    const std::string close = R"("}" )" + primitive("space");
    const std::string comma = R"("," )" + primitive("space");

    if (properties.empty()) {
      auto additional = schema.find("additionalProperties");
      if (additional != schema.end() && *additional == false) {
        if (min_properties.value_or(0) > 0)
          return refuse(where, "'minProperties' above 0 with no properties allowed");
        return open + " " + close;
      }
      if (min_properties.value_or(0) > 0 || max_properties) {
        return refuse(where, "'minProperties' or 'maxProperties' on a map is not supported");
      }
      std::string value = primitive("value");
      if (additional != schema.end() && *additional != true) {
        IG_ASSIGN_OR_RETURN(
            value, visit(*additional, hint + "-value", where + "/additionalProperties", depth + 1));
      }
      const std::string entry = add_rule(
          hint + "-entry", primitive("string") + " \":\" " + primitive("space") + " " + value);
      return open + " ( " + entry + " ( " + comma + " " + entry + " )* )? " + close;
    }
    const int64_t n_required = static_cast<int64_t>(std::count_if(
        properties.begin(), properties.end(), [](const Property& p) { return p.required; }));
    if (min_properties.value_or(0) > n_required) {
      return refuse(where,
                    "'minProperties' above the number of required properties is not supported");
    }
    if (max_properties && *max_properties < static_cast<int64_t>(properties.size())) {
      return refuse(where, "'maxProperties' below the number of properties is not supported");
    }

    const size_t n = properties.size();
    std::vector<std::string> entries(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string property_hint = hint + "-" + properties[i].name;
      IG_ASSIGN_OR_RETURN(std::string value,
                          visit(*properties[i].schema, property_hint,
                                where + "/properties/" + properties[i].name, depth + 1));
      entries[i] = add_rule(property_hint + "-kv", gbnf_literal(ojson(properties[i].name).dump()) +
                                                       " " + primitive("space") + " \":\" " +
                                                       primitive("space") + " " + value);
    }
    // after[i]: properties i.. when one is already written (each preceded by a comma);
    // first[i]: properties i.. when none is written yet.
    std::vector<std::string> after(n + 1);
    for (size_t i = n; i-- > 0;) {
      std::string piece = comma + " " + entries[i];
      if (!properties[i].required) piece = "( " + piece + " )?";
      if (!after[i + 1].empty()) piece += " " + after[i + 1];
      after[i] = add_rule(hint + "-after", piece);
    }
    std::vector<std::string> first(n + 1);
    for (size_t i = n; i-- > 0;) {
      std::string with = entries[i] + (after[i + 1].empty() ? "" : " " + after[i + 1]);
      if (properties[i].required) {
        first[i] = with;
      } else {
        first[i] = add_rule(hint + "-first", with + " | " + first[i + 1]);
      }
      if (properties[i].required && i > 0) first[i] = add_rule(hint + "-first", first[i]);
    }
    return open + " " + first[0] + " " + close;
  }

  Result<std::string> array_expression(const ojson& schema, const std::string& hint,
                                       const std::string& where, int depth) {
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> min_items, read_count(schema, "minItems", where));
    IG_ASSIGN_OR_RETURN(std::optional<int64_t> max_items, read_count(schema, "maxItems", where));
    const int64_t min = min_items.value_or(0);
    if (max_items && *max_items < min) return refuse(where, "'maxItems' below 'minItems'");
    const std::string open = R"("[" )" + primitive("space");
    const std::string close = R"("]" )" + primitive("space");
    const std::string comma = R"("," )" + primitive("space");

    const ojson* prefix = nullptr;
    const ojson* rest = nullptr;  // the schema of items after the prefix; null: none allowed
    if (auto p = schema.find("prefixItems"); p != schema.end()) {
      if (!p->is_array()) return refuse(where, "'prefixItems' must be an array");
      prefix = &*p;
      if (auto it = schema.find("items"); it != schema.end() && *it != false) rest = &*it;
    } else if (auto it = schema.find("items"); it != schema.end() && it->is_array()) {
      prefix = &*it;  // draft 7's tuple form
      if (auto extra = schema.find("additionalItems"); extra != schema.end() && *extra != false) {
        rest = &*extra;
      }
    }
    static const ojson kAnything = true;
    if (!prefix) {
      auto it = schema.find("items");
      const ojson& item_schema = it == schema.end() ? kAnything : *it;
      if (item_schema == false) {
        if (min > 0) return refuse(where, "'minItems' above 0 with 'items': false");
        return open + " " + close;
      }
      IG_ASSIGN_OR_RETURN(std::string item_expr,
                          visit(item_schema, hint + "-item", where + "/items", depth + 1));
      const std::string item = add_rule(hint + "-item", item_expr);
      if (max_items && *max_items == 0) return open + " " + close;
      const std::string more = "( " + comma + " " + item + " )";
      const std::optional<int64_t> more_max =
          max_items ? std::optional<int64_t>(*max_items - 1) : std::nullopt;
      if (min == 0) {
        return open + " ( " + item + " " + more + repeat_suffix(0, more_max) + " )? " + close;
      }
      return open + " " + item + " " + more + repeat_suffix(min - 1, more_max) + " " + close;
    }
    const auto n_prefix = static_cast<int64_t>(prefix->size());
    if (max_items && *max_items < n_prefix) {
      return refuse(where, "'maxItems' below the number of prefix items is not supported");
    }
    std::string out = open;
    for (int64_t i = 0; i < n_prefix; ++i) {
      IG_ASSIGN_OR_RETURN(std::string item,
                          visit((*prefix)[static_cast<size_t>(i)], fmt::format("{}-{}", hint, i),
                                fmt::format("{}/prefixItems/{}", where, i), depth + 1));
      out += (i ? " " + comma + " " : " ") + add_rule(fmt::format("{}-{}", hint, i), item);
    }
    const int64_t extra_min = std::max<int64_t>(0, min - n_prefix);
    if (rest) {
      IG_ASSIGN_OR_RETURN(std::string item_expr,
                          visit(*rest, hint + "-item", where + "/items", depth + 1));
      const std::string item = add_rule(hint + "-item", item_expr);
      const std::optional<int64_t> extra_max =
          max_items ? std::optional<int64_t>(*max_items - n_prefix) : std::nullopt;
      if (n_prefix == 0) return refuse(where, "an empty 'prefixItems'");
      if (!extra_max || *extra_max > 0) {
        out += " ( " + comma + " " + item + " )" + repeat_suffix(extra_min, extra_max);
      }
    } else if (extra_min > 0) {
      return refuse(where, "'minItems' above the prefix items with no more items allowed");
    }
    return out + " " + close;
  }

  const ojson& root_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> defined_;
  std::map<std::string, std::string> ref_rules_;
};

}  // namespace

Result<std::string> json_schema_to_gbnf(const nlohmann::ordered_json& schema) {
  try {
    return SchemaConverter(schema).convert();
  } catch (const nlohmann::json::exception& e) {  // a value of an unexpected type
    return make_error(StatusCode::kInvalidArgument, "the schema could not be read: {}", e.what());
  }
}

std::string json_object_gbnf() {
  std::string out = "root ::= object\n";
  for (const char* name :
       {"object", "value", "array", "string", "char", "number", "boolean", "null", "space"}) {
    out += fmt::format("{} ::= {}\n", name, primitives().at(name));
  }
  return out;
}

}  // namespace infergrid
