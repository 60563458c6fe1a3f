// HttpSession: one client connection of `infergrid serve`, from its first byte to its close.
//
// Each connection is a session on its own strand; engine events (produced on the engine's step
// thread) are posted to that strand, so a session's state is only touched there. Invariants:
// every accepted generation ends with exactly one final engine event, which the session waits
// for even if the client has gone (so no callback outlives its session); while a request
// generates a read is always pending, so a client that closes is cancelled whatever it sent
// before (a client that only half-closed is still answered: a reset, seen by polling the
// socket, tells the two apart); a client that stops reading is declared gone after the write
// timeout or 256 KiB behind; the body is parsed and tokenized on a worker thread; no exception
// crosses a request boundary; the last response on a connection is followed by a lingering
// close, so the client reads it before the socket goes.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include "server/server_context.h"

namespace infergrid {

// Serves HTTP requests on an accepted connection until it closes.
void serve_connection(boost::asio::ip::tcp::socket socket, ServerContext& server);

}  // namespace infergrid
