#include "cli/serve_cmd.h"

#include <malloc.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cli/chat_template_choice.h"
#include "cli/default_model.h"
#include "cli/kv_cache_type_option.h"
#include "core/cpu_features.h"
#include "engine/engine.h"
#include "engine/kv_pool.h"
#include "kernels/cpu_backend.h"
#include "kvstore/kv_transfer.h"
#include "kvstore/receive_tier.h"
#include "kvstore/shm_tier.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "server/api_server.h"
#include "server/instance_registration.h"

namespace infergrid {

namespace {

struct ServeArgs {
  std::vector<std::string> models;
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 0;
  int io_threads = 2;
  int ctx_size = 0;
  std::string kv_cache_bytes;
  int block_size = SchedulerOptions{}.block_size;
  int max_batch_tokens = SchedulerOptions{}.max_batch_tokens;
  int max_running = SchedulerOptions{}.max_running;
  int max_queued = 256;
  bool no_prefix_cache = false;
  bool no_chunked_prefill = false;
  bool baseline = false;
  std::vector<std::string> served_model_names;
  std::string chat_template;
  std::string chat_template_file;
  int shutdown_grace_ms = 30000;
  std::string kv_disk_dir;
  std::string etcd_url;
  std::string etcd_prefix = RegistrationOptions{}.prefix;
  int etcd_ttl_s = RegistrationOptions{}.ttl_seconds;
  std::string advertise_url;
  std::string kv_dram_bytes;
  std::string kv_dram_name = "default";
  std::string kv_disk_bytes = "16GiB";
  std::string kv_tier_codec = "native";
  KvType kv_cache_type = kDefaultKvType;
  int max_connections = 0;
  int idle_timeout_s = 120;
  int write_timeout_s = 30;
  bool trust_request_priority = false;
  std::string role = "unified";
  int kv_transfer_port = -1;  // -1: no KV transfer listener
  std::string kv_transfer_bytes = "256MiB";
  std::vector<std::string> api_keys;
  std::string api_key_file;
  bool protect_health_metrics = false;
  std::vector<std::string> cors_origins;
  std::vector<std::string> allowed_hosts;
};

ServeArgs args;
CLI::App* command = nullptr;

// "4GiB", "512MiB", "1000000" -> bytes.
bool parse_bytes(const std::string& text, size_t& out) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return false;
  }
  std::string unit = text.substr(pos);
  const std::pair<const char*, double> units[] = {
      {"", 1},     {"B", 1},           {"K", 1e3}, {"KB", 1e3}, {"KiB", 1024.0},      {"M", 1e6},
      {"MB", 1e6}, {"MiB", 1048576.0}, {"G", 1e9}, {"GB", 1e9}, {"GiB", 1073741824.0}};
  for (const auto& [name, scale] : units) {
    if (unit == name && value >= 0) {
      out = static_cast<size_t>(value * scale);
      return true;
    }
  }
  return false;
}

int fail(const Status& status) {
  std::fprintf(stderr, "infergrid serve: %s\n", status.to_string().c_str());
  return 1;
}

// One model of the server and everything built for it; alive until the server stops.
struct Instance {
  std::string path;
  std::vector<std::string> names;  // the first is reported
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat;
  std::unique_ptr<CpuBackend> backend;
  EngineOptions options;
  // With a DRAM tier. Before the engine: the engine's tier writer tells it of each block, so
  // it must outlive the engine.
  std::unique_ptr<KvTransferSender> kv_sender;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<KvTransferReceiver> kv_receiver;  // with --kv-transfer-port
};

// Loads a model and builds its engine from the command line's options. disk_dir: its SSD tier
// directory ("" for none).
Result<std::unique_ptr<Instance>> build_instance(const std::string& path,
                                                 std::vector<std::string> names,
                                                 const std::string& disk_dir, int n_models) {
  auto in = std::make_unique<Instance>();
  in->path = path;
  in->names = std::move(names);
  IG_ASSIGN_OR_RETURN(in->model, Model::load(path));
  IG_ASSIGN_OR_RETURN(in->tokenizer, Tokenizer::from_gguf(in->model->gguf()));
  IG_ASSIGN_OR_RETURN(ChatTemplate chat,
                      choose_chat_template(*in->model, *in->tokenizer, args.chat_template_file,
                                           args.chat_template, in->names.front()));
  in->chat = std::move(chat);

  EngineOptions& options = in->options;
  SchedulerOptions& s = options.scheduler;
  const ModelConfig& config = in->model->config();
  s.block_size = args.block_size;
  s.max_batch_tokens = args.max_batch_tokens;
  s.max_running = args.max_running;
  s.max_context =
      args.ctx_size > 0 ? std::min(args.ctx_size, config.n_ctx_train) : config.n_ctx_train;
  s.prefix_caching = !args.no_prefix_cache;
  s.chunked_prefill = !args.no_chunked_prefill;
  if (args.baseline) {
    // One request at a time, nothing reused: what a server without batching or caching does.
    s.max_running = 1;
    s.prefix_caching = false;
  }
  // Cheap (one lock per committed block) and what a router follows: always kept.
  if (s.prefix_caching) s.kv_events = std::make_shared<KvEventLog>();
  options.max_queued = args.max_queued;
  if (!args.kv_cache_bytes.empty() && !parse_bytes(args.kv_cache_bytes, options.kv_cache_bytes)) {
    return make_error(StatusCode::kInvalidArgument,
                      "--kv-cache-bytes '{}' is not a size (e.g. 2GiB, 512MiB)",
                      args.kv_cache_bytes);
  }
  if (args.kv_cache_bytes.empty() && n_models > 1) {
    // The default budget is the machine's, not each model's.
    options.kv_cache_bytes =
        default_kv_cache_bytes(config, s.block_size, s.max_context, args.kv_cache_type) /
        static_cast<size_t>(n_models);
  }

  // CLI11 has checked the name against the same list.
  s.tier_codec = parse_kv_codec(args.kv_tier_codec).value_or(KvCodec::kNative);
  s.kv_type = args.kv_cache_type;
  const uint64_t tier_layout =
      Scheduler::kv_layout_tag(*in->model, s.block_size, s.kv_type, s.tier_codec);
  if (!disk_dir.empty()) {
    size_t disk_bytes = 0;
    if (!parse_bytes(args.kv_disk_bytes, disk_bytes)) {
      return make_error(StatusCode::kInvalidArgument, "--kv-disk-bytes '{}' is not a size",
                        args.kv_disk_bytes);
    }
    auto tier = std::make_shared<DiskTier>(disk_dir, disk_bytes, tier_layout, s.block_size);
    IG_RETURN_IF_ERROR(tier->open());
    spdlog::info("KV disk tier {}: {} blocks ({:.1f} MiB of {:.1f} MiB) found", disk_dir,
                 tier->stats().blocks, tier->stats().used_bytes / 1048576.0,
                 disk_bytes / 1048576.0);
    s.disk_tier = std::move(tier);
  }
  if (!args.kv_dram_bytes.empty()) {
    size_t dram_bytes = 0;
    if (!parse_bytes(args.kv_dram_bytes, dram_bytes)) {
      return make_error(StatusCode::kInvalidArgument, "--kv-dram-bytes '{}' is not a size",
                        args.kv_dram_bytes);
    }
    // The segment's name carries the layout tag, so each model has its own.
    IG_ASSIGN_OR_RETURN(
        auto tier,
        ShmTier::open(args.kv_dram_name, dram_bytes, tier_layout, s.block_size,
                      Scheduler::tier_block_bytes(config, s.block_size, s.kv_type, s.tier_codec)));
    spdlog::info("KV DRAM tier {}: {} slots, {} blocks present", tier->segment_name(),
                 tier->n_slots(), tier->stats().blocks);
    s.dram_tier = std::shared_ptr<ShmTier>(std::move(tier));
  }
  if (args.kv_transfer_port >= 0) {
    size_t transfer_bytes = 0;
    if (!parse_bytes(args.kv_transfer_bytes, transfer_bytes)) {
      return make_error(StatusCode::kInvalidArgument, "--kv-transfer-bytes '{}' is not a size",
                        args.kv_transfer_bytes);
    }
    if (!s.prefix_caching) {
      return make_error(StatusCode::kInvalidArgument,
                        "--kv-transfer-port needs the prefix cache (received blocks are found "
                        "by prefix matching)");
    }
    s.receive_tier = std::make_shared<KvReceiveTier>(
        tier_layout, s.block_size,
        Scheduler::tier_block_bytes(config, s.block_size, s.kv_type, s.tier_codec), transfer_bytes,
        std::chrono::seconds(30));
  }

  // Without --threads, several models share the cores out instead of each spinning on all.
  const int threads =
      args.threads > 0 || n_models == 1
          ? args.threads
          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / n_models);
  in->backend = std::make_unique<CpuBackend>(threads);
  in->backend->reserve(s.max_batch_tokens, config.max_matmul_cols());
  if (s.dram_tier) {
    in->kv_sender = std::make_unique<KvTransferSender>(s.dram_tier);
    options.scheduler.on_dram_write = [sender = in->kv_sender.get()] { sender->notify_written(); };
  }
  IG_ASSIGN_OR_RETURN(in->engine,
                      Engine::create(*in->model, *in->tokenizer, *in->backend, options));
  if (s.receive_tier) {
    KvTransferReceiverOptions r;
    r.host = args.host;
    r.port = args.kv_transfer_port;
    r.model_fingerprint = in->model->fingerprint();
    IG_ASSIGN_OR_RETURN(in->kv_receiver, KvTransferReceiver::start(r, s.receive_tier));
    spdlog::info("KV transfer: receiving on {}:{} ({} MiB for blocks not yet loaded)", args.host,
                 in->kv_receiver->port(), args.kv_transfer_bytes);
  }
  return in;
}

void log_instance(const Instance& in) {
  const SchedulerOptions& s = in.options.scheduler;
  const EngineStats stats = in.engine->stats();
  spdlog::info("{}: {}", in.names.front(), in.model->describe());
  spdlog::info("{}: backend {} (cpu: {}); chat template {}", in.names.front(), in.backend->name(),
               cpu_features().describe(), in.chat->name());
  spdlog::info(
      "{}: KV cache {} blocks x {} tokens of {} ({:.1f} MiB), context {}, batch {} tokens, up to "
      "{} running, prefix cache {}, chunked prefill {}",
      in.names.front(), stats.blocks_total, s.block_size, kv_type_name(s.kv_type),
      static_cast<double>(stats.blocks_total) * stats.block_bytes / 1048576.0,
      in.engine->max_context(), s.max_batch_tokens, s.max_running, s.prefix_caching ? "on" : "off",
      s.chunked_prefill ? "on" : "off");
}

int run() {
  // Request bodies and prompts of megabytes are allocated and freed on worker threads; with
  // glibc's sliding mmap threshold they end up in per-thread arenas that keep the memory after
  // the request. A fixed threshold gives every buffer of 1 MiB or more back when it is freed.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  if (args.kv_transfer_port >= 0 && args.models.size() > 1) {
    return fail(Status(StatusCode::kInvalidArgument,
                       "--kv-transfer-port takes KV for one model: serve one --model"));
  }
  if (args.role == "prefill" && args.kv_dram_bytes.empty()) {
    return fail(Status(StatusCode::kInvalidArgument,
                       "--role prefill hands KV to decode instances through the shared DRAM "
                       "tier: give --kv-dram-bytes (and the decode instances' --kv-dram-name)"));
  }
  std::vector<std::string> paths;
  for (const std::string& m : args.models.empty() ? std::vector<std::string>{""} : args.models) {
    auto resolved = resolve_model_path(m);
    if (!resolved.is_ok()) return fail(resolved.status());
    paths.push_back(*resolved);
  }
  // Names: with one model every --served-model-name is an alias of it; with several, one name
  // per model in order (or none: each is named after its file).
  const auto& given = args.served_model_names;
  if (paths.size() > 1 && !given.empty() && given.size() != paths.size()) {
    return fail(make_error(StatusCode::kInvalidArgument,
                           "{} models and {} --served-model-name values: give one name per "
                           "model, in the order of --model, or none",
                           paths.size(), given.size()));
  }
  std::vector<std::unique_ptr<Instance>> instances;
  for (size_t i = 0; i < paths.size(); ++i) {
    std::vector<std::string> names;
    if (paths.size() == 1) {
      names = given;
    } else if (!given.empty()) {
      names = {given[i]};
    }
    if (names.empty()) names.push_back(std::filesystem::path(paths[i]).stem().string());
    for (const auto& other : instances) {
      for (const std::string& name : names) {
        if (std::find(other->names.begin(), other->names.end(), name) != other->names.end()) {
          return fail(make_error(StatusCode::kInvalidArgument,
                                 "two models would be served as '{}' (name them with "
                                 "--served-model-name)",
                                 name));
        }
      }
    }
    // Each model's SSD blocks in their own subdirectory (a tier removes files of another layout
    // on open, so two models must never share one), named by the model's position and its name
    // made safe for a path: never one directory for two models, never one outside the given.
    std::string disk_dir = args.kv_disk_dir;
    if (!disk_dir.empty() && paths.size() > 1) {
      std::string safe = names.front();
      for (char& c : safe) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
      }
      disk_dir = (std::filesystem::path(disk_dir) / fmt::format("{}-{}", i, safe)).string();
    }
    auto instance =
        build_instance(paths[i], std::move(names), disk_dir, static_cast<int>(paths.size()));
    if (!instance.is_ok()) return fail(instance.status().with_context(paths[i]));
    instances.push_back(std::move(instance).value());
  }

  ServerOptions server_options;
  server_options.host = args.host;
  server_options.port = args.port;
  server_options.io_threads = args.io_threads;
  server_options.shutdown_grace = std::chrono::milliseconds(args.shutdown_grace_ms);
  server_options.max_connections = args.max_connections;
  server_options.idle_timeout = std::chrono::seconds(args.idle_timeout_s);
  server_options.write_timeout = std::chrono::seconds(args.write_timeout_s);
  server_options.trust_request_priority = args.trust_request_priority;
  server_options.role = args.role;
  // Set once registered: a role switch rewrites the registry record with the new role.
  struct RoleRecorder {
    std::mutex mutex;  // set on this thread while I/O threads may already switch the role
    std::function<void(const std::string&)> record;
  };
  auto recorder = std::make_shared<RoleRecorder>();
  server_options.on_role_change = [recorder](const std::string& role) {
    std::lock_guard lock(recorder->mutex);
    if (recorder->record) recorder->record(role);
  };
  AccessOptions& access = server_options.access;
  for (const std::string& key : args.api_keys) {
    // An empty key would let an empty "Bearer " header through.
    if (key.empty()) return fail(Status(StatusCode::kInvalidArgument, "--api-key is empty"));
    access.api_keys.push_back({key, 0});
  }
  if (!args.api_key_file.empty()) {
    auto keys = read_api_key_file(args.api_key_file);
    if (!keys.is_ok()) return fail(keys.status());
    access.api_keys.insert(access.api_keys.end(), keys->begin(), keys->end());
  }
  access.protect_health_metrics = args.protect_health_metrics;
  access.cors_origins = args.cors_origins;
  access.allowed_hosts = args.allowed_hosts;
  std::vector<ServedModel> served;
  for (const auto& in : instances) {
    served.push_back({*in->engine, *in->tokenizer, *in->chat, in->names, in->kv_sender.get(),
                      in->kv_receiver.get()});
  }
  ApiServer server(std::move(served), server_options);
  Status started = server.start();
  if (!started.is_ok()) return fail(started);

  for (const auto& in : instances) log_instance(*in);
  spdlog::info("up to {} connections; idle timeout {} s, write timeout {} s; {}",
               server.max_connections(), args.idle_timeout_s, args.write_timeout_s,
               access.api_keys.empty() ? std::string("no API key required")
                                       : fmt::format("{} API keys", access.api_keys.size()));
  // Registered before "listening" is printed: a caller waiting for that line finds the
  // instance in the registry too.
  std::unique_ptr<InstanceRegistration> registration;
  if (!args.etcd_url.empty()) {
    const std::string address = args.advertise_url.empty()
                                    ? fmt::format("http://{}:{}", args.host, server.port())
                                    : args.advertise_url;
    const Instance& first = *instances.front();
    const EngineStats stats = first.engine->stats();
    nlohmann::json record = {{"address", address},
                             {"models", first.names},
                             {"fingerprint", fmt::format("{:016x}", first.model->fingerprint())},
                             {"role", args.role},
                             {"block_size", first.options.scheduler.block_size},
                             {"blocks_total", stats.blocks_total}};
    RegistrationOptions reg{args.etcd_url, args.etcd_prefix, args.etcd_ttl_s, address,
                            record.dump()};
    auto started_registration = InstanceRegistration::start(std::move(reg));
    if (!started_registration.is_ok()) {
      server.request_shutdown();
      server.run();
      for (const auto& in : instances) {
        in->engine->shutdown();
        if (in->kv_sender) in->kv_sender->shutdown();
      }
      return fail(started_registration.status());
    }
    registration = std::move(started_registration).value();
    std::lock_guard lock(recorder->mutex);
    recorder->record = [raw = registration.get(), record](const std::string& role) mutable {
      record["role"] = role;
      raw->update(record.dump());
    };
  }
  for (const auto& in : instances) {
    std::printf("infergrid serve: model '%s' listening on http://%s:%d\n",
                in->names.front().c_str(), args.host.c_str(), server.port());
  }
  std::fflush(stdout);
  server.run();
  {
    std::lock_guard lock(recorder->mutex);
    recorder->record = nullptr;
  }
  registration.reset();  // deregisters: routers stop sending here at once
  for (const auto& in : instances) in->engine->shutdown();
  // While the server's I/O context still exists: a session's end posts to it.
  for (const auto& in : instances) {
    if (in->kv_sender) in->kv_sender->shutdown();
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app) {
  command = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  command->add_option("-m,--model", args.models,
                      "GGUF model file (default: the default model); give it again to serve "
                      "several models from one process, each with its own engine and KV cache");
  command->add_option("--host", args.host, "Address to listen on")->capture_default_str();
  command->add_option("--port", args.port, "Port (0: any free port)")->capture_default_str();
  command->add_option(
      "-t,--threads", args.threads,
      "Compute threads per model (default: all cores, shared out between the models)");
  command->add_option("--io-threads", args.io_threads, "HTTP I/O threads")->capture_default_str();
  command->add_option("-c,--ctx-size", args.ctx_size,
                      "Context length per request (default: the model's)");
  command->add_option("--kv-cache-bytes", args.kv_cache_bytes,
                      "KV cache pool size per model, e.g. 4GiB (default: 40% of free memory, at "
                      "most 8GiB, shared out between the models)");
  add_kv_cache_type_option(*command, args.kv_cache_type);
  command->add_option("--block-size", args.block_size, "Tokens per KV block")
      ->capture_default_str();
  command
      ->add_option("--max-batch-tokens", args.max_batch_tokens,
                   "Tokens per engine step (chunked-prefill budget)")
      ->capture_default_str();
  command->add_option("--max-running", args.max_running, "Requests decoding at once")
      ->capture_default_str();
  command->add_option("--max-queued", args.max_queued, "Waiting requests before new ones get 429")
      ->capture_default_str();
  command->add_flag("--no-prefix-cache", args.no_prefix_cache, "Disable prefix reuse");
  command->add_flag("--no-chunked-prefill", args.no_chunked_prefill,
                    "Prefill whole prompts in steps of their own");
  command->add_flag("--baseline", args.baseline,
                    "Baseline mode for comparisons: one request at a time, no prefix cache");
  command->add_option("--served-model-name", args.served_model_names,
                      "Model name(s) clients use (default: the file name); with several --model, "
                      "one per model in the same order");
  command->add_option("--chat-template", args.chat_template,
                      "Override the chat template with a built-in one: chatml, llama3, llama2, "
                      "mistral, phi3, gemma, deepseek-r1");
  command
      ->add_option("--chat-template-file", args.chat_template_file,
                   "Override the chat template with a Jinja file (as Hugging Face's "
                   "chat_template)")
      ->excludes("--chat-template");
  command->add_option("--kv-dram-bytes", args.kv_dram_bytes,
                      "Size of the shared host-DRAM KV tier per model, e.g. 8GiB (default: off); "
                      "every server of this model with the same --kv-dram-name shares it");
  command->add_option("--kv-dram-name", args.kv_dram_name, "Name of the shared DRAM tier")
      ->capture_default_str();
  command
      ->add_option("--kv-transfer-port", args.kv_transfer_port,
                   "Take KV blocks that prefill instances on other hosts stream here, on this "
                   "TCP port of --host (0: any free port; reported to routers in /kv/events); "
                   "a trusted network only, like the engines' NCCL ports")
      ->check(CLI::Range(0, 65535));
  command
      ->add_option("--kv-transfer-bytes", args.kv_transfer_bytes,
                   "Memory for received KV blocks that no request has loaded yet")
      ->capture_default_str();
  command->add_option("--etcd", args.etcd_url,
                      "Register this instance in etcd (e.g. http://127.0.0.1:2379) under a "
                      "lease, for `infergrid route --etcd`");
  command->add_option("--etcd-prefix", args.etcd_prefix, "Key prefix of the registry")
      ->capture_default_str();
  command
      ->add_option("--etcd-ttl", args.etcd_ttl_s,
                   "Lease TTL in seconds: a killed instance leaves the registry this late")
      ->capture_default_str();
  command->add_option("--advertise-url", args.advertise_url,
                      "The URL routers should use (default: http://HOST:PORT)");
  command
      ->add_option("--role", args.role,
                   "What routers send here: unified (anything), prefill (prompts whose KV it "
                   "hands to decode instances through the shared DRAM tier; needs "
                   "--kv-dram-bytes) or decode")
      ->check(CLI::IsMember({"unified", "prefill", "decode"}));
  command->add_option("--kv-disk-dir", args.kv_disk_dir,
                      "Directory of the SSD KV tier (evicted prefix blocks; kept across restarts; "
                      "with several models, a subdirectory each)");
  command
      ->add_option("--kv-disk-bytes", args.kv_disk_bytes, "Capacity of the SSD KV tier per model")
      ->capture_default_str();
  command
      ->add_option(
          "--kv-tier-codec", args.kv_tier_codec,
          "How the DRAM and SSD tiers store KV: native (the KV cache type's bytes, "
          "exact) or int8 (per-head scales, 1.8-1.9x (f16) or 3.6-3.9x (f32) more blocks per "
          "byte, small accuracy change; see docs/BENCHMARKS.md)")
      ->check(CLI::IsMember({"native", "int8"}))
      ->capture_default_str();
  command
      ->add_option("--shutdown-grace-ms", args.shutdown_grace_ms,
                   "On SIGTERM, how long in-flight requests may run")
      ->capture_default_str();
  command
      ->add_option("--max-connections", args.max_connections,
                   "Open connections; past it new ones get 503 (default: the fd limit less 128)")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--idle-timeout-s", args.idle_timeout_s,
                   "Close a connection that sends no (complete) request for this long")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--write-timeout-s", args.write_timeout_s,
                   "Drop a client (and cancel its request) that reads nothing for this long")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_flag("--trust-request-priority", args.trust_request_priority,
                    "Honour the 'priority' field of request bodies (by default priority comes "
                    "from the API key)");
  command->add_option("--api-key", args.api_keys,
                      "Require 'Authorization: Bearer KEY' (repeatable)");
  command
      ->add_option("--api-key-file", args.api_key_file,
                   "File of API keys, one per line: 'KEY' or 'KEY PRIORITY'")
      ->check(CLI::ExistingFile);
  command->add_flag("--protect-health-metrics", args.protect_health_metrics,
                    "Require an API key on /health and /metrics too");
  command->add_option("--cors-origin", args.cors_origins,
                      "Origin allowed to call from a browser (repeatable; * for any; default: "
                      "none)");
  command->add_option("--allowed-host", args.allowed_hosts,
                      "Accept only requests whose Host header names one of these (repeatable; "
                      "against DNS rebinding when bound to loopback; default: any)");
  return command;
}

int run_serve_if_parsed() {
  if (command == nullptr || !command->parsed()) return -1;
  return run();
}

}  // namespace infergrid
