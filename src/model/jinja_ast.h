// The parsed form of a Jinja template (internal to jinja.cpp and jinja_render.cpp): expression
// and statement nodes, each with the source line it came from for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/jinja_value.h"

namespace infergrid {

struct JinjaNode;
using JinjaNodePtr = std::shared_ptr<const JinjaNode>;

struct JinjaNode {
  enum class Type {
    // Expressions.
    kLiteral,      // value
    kName,         // name
    kAttribute,    // children[0].name
    kItem,         // children[0][children[1]]
    kSlice,        // children[0][children[1]:children[2]:children[3]] (null child = omitted)
    kCall,         // children[0](children[1..], named...)
    kFilter,       // children[0] | name(children[1..], named...)
    kTest,         // children[0] is [not] name(children[1..])
    kBinary,       // children[0] op children[1]
    kUnary,        // op children[0]
    kConditional,  // children[1] if children[0] else children[2] (children[2] may be null)
    kList,
    kTuple,
    kDict,  // children: key, value, key, value, ...
    // Statements.
    kText,    // name = the text
    kOutput,  // {{ children[0] }}
    kBody,    // children, in order
    kIf,      // children: cond, body, cond, body, ..., [else body]; has_else
    kFor,     // targets, children[0] iterable, [1] body, [2] else body or null, [3] filter
    kSet,     // targets / name(attribute) = children[0]; block set: children[0] is a body
    kMacro,   // name, params (targets) with defaults (children[1..]), children[0] body
    kBreak,
    kContinue,
  };

  Type type;
  int line = 0;
  std::string name;  // identifier, attribute, filter/test/macro name, operator, or text
  jinja::Value value;
  std::vector<JinjaNodePtr> children;
  std::vector<std::string> targets;                         // for/set/macro names
  std::vector<std::pair<std::string, JinjaNodePtr>> named;  // keyword arguments
  std::string attribute;                                    // set ns.attribute = ...
  bool negated = false;                                     // `is not`
  bool has_else = false;
  bool block_set = false;
};

}  // namespace infergrid
