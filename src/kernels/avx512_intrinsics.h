// <immintrin.h> for the files compiled with AVX-512 flags. GCC 12's AVX-512 headers
// self-initialise their "undefined" vectors and then warn about it from inside the header (GCC
// bug 105593, fixed in 13); the pragma covers only the header's lines.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
