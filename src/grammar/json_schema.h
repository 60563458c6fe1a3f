// JSON Schema -> GBNF: a grammar whose every sentence is JSON that validates against the schema.
//
// Supported: type (one or a list), enum, const, anyOf / oneOf (as alternatives), allOf of object
// schemas (merged), $ref into the same document (#, #/$defs/..., #/definitions/..., recursion
// included), nullable; objects with properties in their declared order, required and optional
// ones, maps through additionalProperties; arrays with items, prefixItems (or draft-7 tuple
// items), minItems / maxItems; strings with minLength / maxLength, pattern (a regular-expression
// subset: classes, groups, alternation, quantifiers, anchors) and the formats date, time,
// date-time and uuid (other formats are annotations, as JSON Schema defines them by default);
// integers with any bounds (exclusive ones too), numbers with whole-number inclusive bounds.
//
// Whatever a schema asks that the grammar cannot guarantee (not, if/then/else, uniqueItems,
// multipleOf, patternProperties, lookaround in a pattern, fractional bounds, ...) is refused
// with an error naming the keyword and its place in the schema, never silently dropped. The
// output is compact: at most a bounded run of whitespace between tokens, and unbounded
// integers capped at 18 digits (every such value still validates).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace infergrid {

// The grammar's start rule is `root`; no other rule's name begins with "root", so a caller may
// rename it and add rules of its own around it (root-call, ...).
Result<std::string> json_schema_to_gbnf(const nlohmann::ordered_json& schema);

// Any JSON object (response_format {"type": "json_object"}).
std::string json_object_gbnf();

}  // namespace infergrid
