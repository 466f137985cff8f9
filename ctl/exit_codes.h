// wanctl's exit codes (also in `wanctl --help` and docs/operations.md).
#pragma once

#include <string>

namespace wand::ctl {

constexpr int kExitOk = 0;
constexpr int kExitJobFailed = 1;       // the job failed, or the daemon hit an internal error
constexpr int kExitUsage = 2;           // bad command line or a request the daemon rejected
constexpr int kExitNoDaemon = 3;        // daemon not running, socket inaccessible, protocol mismatch
constexpr int kExitNotFound = 4;        // no such job (or not yours), permission denied
constexpr int kExitCancelled = 5;       // the job was cancelled
constexpr int kExitNoPlan = 6;          // `wanctl plan`: no plan for the job (it fits no card as
                                        // configured, or cannot be planned); the text says why and what to change
constexpr int kExitInterrupted = 130;   // generate / watch stopped by Ctrl-C (the job goes on)
// 141 (128 + SIGPIPE) is not an exit status of wanctl's own: when the reader of its output
// goes away, wanctl is killed by SIGPIPE as cat is (Note [Closed output pipe], cli.cpp).

// Exit code for an ErrorReply code (proto/error_codes.h).
int exit_code_for_error(const std::string& code);

// wanctl's own error codes (Note [One code per cause], ctl/client.h), beside the daemon's.
constexpr const char* kErrUsage = "usage";                    // exit 2: the command line
constexpr const char* kErrNotRunning = "not_running";         // exit 3: no socket, nobody listening
constexpr const char* kErrNoAccess = "no_access";             // exit 3: the socket's group
constexpr const char* kErrConnectionLost = "connection_lost"; // exit 3: wand went away
constexpr const char* kErrProtocol = "protocol";              // exit 3: hello failed, bad message
constexpr const char* kErrIo = "io";                          // exit 1: writing the output file
constexpr const char* kErrInterrupted = "interrupted";        // exit 130: Ctrl-C (the job goes on)

}  // namespace wand::ctl
