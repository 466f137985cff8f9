#include "proto/version.h"

#ifndef WAND_VERSION_STRING
#define WAND_VERSION_STRING "unknown"
#endif

namespace wand::proto {

const char* wand_version() { return WAND_VERSION_STRING; }

}  // namespace wand::proto
