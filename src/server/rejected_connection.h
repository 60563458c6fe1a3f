// A connection over --max-connections: answered 503 with Retry-After at once, then closed
// (lingering, so the client reads the answer).
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include "server/server_context.h"

namespace infergrid {

void reject_connection(boost::asio::ip::tcp::socket socket, ServerContext& server);

}  // namespace infergrid
