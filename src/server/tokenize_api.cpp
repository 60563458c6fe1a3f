#include "server/tokenize_api.h"

#include <fmt/format.h>

#include "model/unicode_util.h"

namespace infergrid {

namespace {

using nlohmann::json;

// The model a body's optional "model" names, or the error (as generation requests answer it).
std::variant<const ModelEntry*, ApiError> model_of(const ServerContext& server, const json& body) {
  std::string name;
  if (auto it = body.find("model"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return api_error(400, "'model' must be a string", "model");
    name = it->get<std::string>();
  }
  return server.route(name);
}

std::optional<ApiError> read_flag(const json& body, const char* name, bool& out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return api_error(400, fmt::format("'{}' must be a boolean", name), name);
  out = it->get<bool>();
  return std::nullopt;
}

// Parses the body as an object and finds its model.
std::variant<std::pair<json, const ModelEntry*>, ApiError> object_and_model(
    const ServerContext& server, std::string_view text) {
  auto parsed = parse_json_body(text);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  json& body = std::get<json>(parsed);
  if (!body.is_object()) return api_error(400, "the request body must be a JSON object");
  auto model = model_of(server, body);
  if (auto* error = std::get_if<ApiError>(&model)) return *error;
  return std::pair{std::move(body), std::get<const ModelEntry*>(model)};
}

}  // namespace

std::variant<std::string, ApiError> tokenize_body(const ServerContext& server,
                                                  std::string_view text) {
  try {
    auto got = object_and_model(server, text);
    if (auto* error = std::get_if<ApiError>(&got)) return *error;
    auto& [body, model] = std::get<std::pair<json, const ModelEntry*>>(got);
    auto content = body.find("content");
    if (content == body.end() || !content->is_string()) {
      return api_error(400, "'content' is required and must be a string", "content");
    }
    bool add_special = false, with_pieces = false;
    if (auto e = read_flag(body, "add_special", add_special)) return *e;
    if (auto e = read_flag(body, "with_pieces", with_pieces)) return *e;
    const std::vector<int32_t> ids = model->tokenizer.encode(content->get_ref<const std::string&>(),
                                                             add_special, /*parse_special=*/true);
    json tokens = json::array();
    for (int32_t id : ids) {
      if (!with_pieces) {
        tokens.push_back(id);
        continue;
      }
      const std::string piece = model->tokenizer.token_to_piece(id, true);
      if (is_valid_utf8(piece)) {
        tokens.push_back({{"id", id}, {"piece", piece}});
      } else {
        json bytes = json::array();
        for (unsigned char c : piece) bytes.push_back(c);
        tokens.push_back({{"id", id}, {"piece", bytes}});
      }
    }
    return json{{"tokens", tokens}}.dump();
  } catch (const std::bad_alloc&) {
    return api_error(503, "the server is out of memory for this request; retry later");
  } catch (const std::exception& e) {
    return api_error(500, fmt::format("internal error tokenizing: {}", e.what()));
  }
}

std::variant<std::string, ApiError> detokenize_body(const ServerContext& server,
                                                    std::string_view text) {
  try {
    auto got = object_and_model(server, text);
    if (auto* error = std::get_if<ApiError>(&got)) return *error;
    auto& [body, model] = std::get<std::pair<json, const ModelEntry*>>(got);
    auto tokens = body.find("tokens");
    if (tokens == body.end() || !tokens->is_array()) {
      return api_error(400, "'tokens' is required and must be an array of token ids", "tokens");
    }
    const int n_vocab = model->tokenizer.n_vocab();
    std::vector<int32_t> ids;
    ids.reserve(tokens->size());
    for (size_t i = 0; i < tokens->size(); ++i) {
      const json& t = (*tokens)[i];
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab) {
        return api_error(
            400, fmt::format("'tokens[{}]' must be a token id from 0 to {}", i, n_vocab - 1),
            "tokens");
      }
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    return json{{"content", model->tokenizer.decode(ids)}}.dump(-1, ' ', false,
                                                                json::error_handler_t::replace);
  } catch (const std::bad_alloc&) {
    return api_error(503, "the server is out of memory for this request; retry later");
  } catch (const std::exception& e) {
    return api_error(500, fmt::format("internal error detokenizing: {}", e.what()));
  }
}

std::variant<std::string, ApiError> apply_template_body(const ServerContext& server,
                                                        std::string_view text) {
  try {
    // The messages are read and checked exactly as a chat completion's are.
    auto parsed = parse_api_request(text, Endpoint::kChat);
    if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
    const ApiRequest& api = std::get<ApiRequest>(parsed);
    auto routed = server.route(api.model);
    if (auto* error = std::get_if<ApiError>(&routed)) return *error;
    const ModelEntry* model = std::get<const ModelEntry*>(routed);
    auto rendered = model->chat_template.render(
        api.messages, true, api.tools.names.empty() ? nullptr : &api.tools.tools);
    if (!rendered.is_ok()) return api_error(400, rendered.status().message(), "messages");
    return json{{"prompt", *rendered}}.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const std::bad_alloc&) {
    return api_error(503, "the server is out of memory for this request; retry later");
  } catch (const std::exception& e) {
    return api_error(500, fmt::format("internal error applying the template: {}", e.what()));
  }
}

}  // namespace infergrid
