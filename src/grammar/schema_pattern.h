// A regular-expression subset (the `pattern` of a JSON Schema string) to a GBNF expression
// over the JSON encoding of the strings it matches, for json_schema.cpp.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace infergrid {

// `where`: the schema path, for errors. A construct the grammar cannot express exactly
// (lookaround, backreferences, ...) is an error naming it.
Result<std::string> pattern_to_gbnf(std::string_view pattern, const std::string& where);

}  // namespace infergrid
