#include "model/model_import.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/synth_vocab.h"

namespace infergrid {

Status write_vocab_file(const TokenizerVocab& vocab, const std::string& chat_template,
                        const std::string& path) {
  GgufWriter writer;
  write_synth_vocab(writer, vocab);
  if (!chat_template.empty()) writer.set_string("tokenizer.chat_template", chat_template);
  return writer.write_file(path);
}

Result<int64_t> encode_corpus(const Tokenizer& tokenizer, std::string_view text,
                              const std::string& path, bool parse_special) {
  std::vector<uint32_t> offsets{0};
  std::vector<uint32_t> ids;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find("\n\n", begin);
    end = end == std::string_view::npos ? text.size() : end + 2;
    // Blank lines beyond the separating one belong to no paragraph.
    while (end < text.size() && text[end] == '\n') ++end;
    std::string paragraph(text.substr(begin, end - begin));
    while (!paragraph.empty() && paragraph.back() == '\n') paragraph.pop_back();
    if (!paragraph.empty()) {
      paragraph += "\n\n";
      for (int32_t id : tokenizer.encode(paragraph, /*add_special=*/false, parse_special)) {
        ids.push_back(static_cast<uint32_t>(id));
      }
      if (ids.size() > UINT32_MAX - 1) {
        return make_error(StatusCode::kInvalidArgument, "corpus has over 2^32 tokens");
      }
      offsets.push_back(static_cast<uint32_t>(ids.size()));
    }
    begin = end;
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return make_error(StatusCode::kIoError, "cannot write '{}'", path);
  const auto put = [&out](const std::vector<uint32_t>& words) {
    out.write(reinterpret_cast<const char*>(words.data()),
              static_cast<std::streamsize>(words.size() * sizeof(uint32_t)));
  };
  put({static_cast<uint32_t>(offsets.size() - 1)});
  put(offsets);
  put(ids);
  if (!out.flush()) return make_error(StatusCode::kIoError, "writing '{}' failed", path);
  return static_cast<int64_t>(ids.size());
}

Status import_safetensors_model(const std::string& tensors_path, const std::string& vocab_path,
                                const std::string& out_path) {
  IG_ASSIGN_OR_RETURN(SafetensorsFile tensors, SafetensorsFile::open(tensors_path));
  IG_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> vocab, GgufFile::open(vocab_path));
  GgufWriter writer;
  const auto meta_it = tensors.metadata().find("gguf");
  if (meta_it == tensors.metadata().end()) {
    return make_error(StatusCode::kInvalidArgument,
                      "{}: no \"gguf\" entry in __metadata__ (the model's GGUF keys)",
                      tensors_path);
  }
  const nlohmann::json meta = nlohmann::json::parse(meta_it->second, nullptr, false);
  if (!meta.is_object() || !meta.contains("general.architecture")) {
    return make_error(StatusCode::kInvalidArgument,
                      "{}: the \"gguf\" metadata is not a JSON object with general.architecture",
                      tensors_path);
  }
  for (const auto& [key, value] : meta.items()) {
    if (value.is_boolean()) {
      writer.set_bool(key, value.get<bool>());
    } else if (value.is_number_unsigned() && value.get<uint64_t>() <= UINT32_MAX) {
      writer.set_u32(key, value.get<uint32_t>());
    } else if (value.is_number_integer() && value.get<int64_t>() >= INT32_MIN &&
               value.get<int64_t>() <= INT32_MAX) {
      writer.set_i32(key, value.get<int32_t>());
    } else if (value.is_number_float()) {
      writer.set_f32(key, value.get<float>());
    } else if (value.is_string()) {
      writer.set_string(key, value.get<std::string>());
    } else {
      return make_error(StatusCode::kInvalidArgument, "{}: metadata '{}' has no GGUF type",
                        tensors_path, key);
    }
  }
  int n_vocab_keys = 0;
  for (const auto& [key, value] : vocab->metadata()) {
    if (key.rfind("tokenizer.", 0) == 0) {
      writer.set_value(key, value);
      ++n_vocab_keys;
    }
  }
  if (n_vocab_keys == 0) {
    return make_error(StatusCode::kInvalidArgument, "{}: no tokenizer.* keys", vocab_path);
  }
  for (const SafetensorsTensor& t : tensors.tensors()) {
    if (t.dtype != "F32") {
      return make_error(StatusCode::kUnsupported, "{}: tensor '{}' is {}, not F32", tensors_path,
                        t.name, t.dtype);
    }
    if (t.shape.empty() || t.shape.size() > 4) {
      return make_error(StatusCode::kUnsupported, "{}: tensor '{}' has {} dimensions", tensors_path,
                        t.name, t.shape.size());
    }
    std::vector<int64_t> dims(t.shape.rbegin(), t.shape.rend());
    writer.add_tensor(t.name, TensorType::kF32, std::move(dims),
                      std::vector<uint8_t>(t.data.begin(), t.data.end()));
  }
  IG_RETURN_IF_ERROR(writer.write_file(out_path));
  // Shapes are only known to fit once the model loads: check before anyone serves the file.
  auto model = Model::load(out_path, Model::WeightPacking::kOff);
  if (!model.is_ok()) {
    std::error_code ignored;
    std::filesystem::remove(out_path, ignored);
    return model.status().with_context("the imported model does not load");
  }
  return Status::ok();
}

}  // namespace infergrid
