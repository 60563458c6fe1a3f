// GET /kv/events: the instance's KV event log (kvstore/kv_events.h) as a server-sent event
// stream, which a router follows to index where each block lives.
//
// Protocol (each SSE `data:` is one JSON object with a "type"):
//   hello    — first: epoch, model name, fingerprint, block_size, blocks_total (hex strings
//              for 64-bit values, so JavaScript readers keep every bit);
//   snapshot — when the reader's `since` is not in this epoch's kept window: every held block
//              by tier, in parts of at most kSnapshotPartBlocks; "seq" is the state they
//              describe, the first part ("part": 0) replaces what the reader knew and the last
//              has "more": false;
//   events   — "ops": [["stored"|"removed", tier, key], ...] in order, "first"/"last" their seq;
//   load     — every kLoadInterval (and so a heartbeat): running, waiting, blocks in use.
// A reader resumes with `?since=LAST&epoch=EPOCH`; anything else starts from a snapshot.
// Invariants: a reader that applies every message in order holds the log's state as of the
// last seq it saw; the stream ends when the client goes, stops reading (write timeout) or the
// server shuts down; it never blocks an I/O thread.
#pragma once

#include <cstdint>
#include <memory>

#include <boost/asio/ip/tcp.hpp>

#include "kvstore/kv_events.h"
#include "server/server_context.h"

namespace infergrid {

inline constexpr size_t kSnapshotPartBlocks = 4096;

struct KvEventQuery {
  uint64_t since = 0;
  uint64_t epoch = 0;
};

// Takes over the connection (the request has been read) and streams until it ends.
void serve_kv_events(boost::asio::ip::tcp::socket socket, ServerContext& server,
                     const ModelEntry& model, std::shared_ptr<KvEventLog> log, KvEventQuery query);

}  // namespace infergrid
