// Stable error code strings sent in ErrorReply.code. Never rename one: scripts and
// wanctl's exit codes depend on them. docs/protocol.md lists them.
#pragma once

namespace wand::proto::errc {

constexpr const char* kBadFrame = "bad_frame";                // body is not a JSON object
constexpr const char* kFrameTooLarge = "frame_too_large";     // length prefix above the maximum
constexpr const char* kBadRequest = "bad_request";            // unknown type, missing/wrong field
constexpr const char* kUnsupportedVersion = "unsupported_version";
constexpr const char* kHelloRequired = "hello_required";      // first message must be hello
constexpr const char* kNotFound = "not_found";                // unknown job id (or not yours)
constexpr const char* kPermissionDenied = "permission_denied";
constexpr const char* kInvalidState = "invalid_state";        // e.g. fetch of an unfinished job
constexpr const char* kUnknownModel = "unknown_model";
constexpr const char* kShuttingDown = "shutting_down";
constexpr const char* kTooManyClients = "too_many_clients";  // every connection slot is taken
constexpr const char* kTimeout = "timeout";                 // no hello / unfinished frame / idle
constexpr const char* kDiskFull = "disk_full";              // the journal could not be written
constexpr const char* kInternal = "internal";

}  // namespace wand::proto::errc
