// wanctl's exit codes (also in `wanctl --help` and docs/operations.md).
#pragma once

namespace wand::ctl {

constexpr int kExitOk = 0;
constexpr int kExitJobFailed = 1;       // the job failed, or the daemon hit an internal error
constexpr int kExitUsage = 2;           // bad command line or a request the daemon rejected
constexpr int kExitNoDaemon = 3;        // daemon not running, socket inaccessible, protocol mismatch
constexpr int kExitNotFound = 4;        // no such job (or not yours), permission denied
constexpr int kExitCancelled = 5;       // the job was cancelled
constexpr int kExitNoPlan = 6;          // `wanctl plan`: no plan for the job (it fits no card as
                                        // configured, or cannot be planned); the text says why and what to change

// Exit code for an ErrorReply code (proto/error_codes.h).
int exit_code_for_error(const std::string& code);

}  // namespace wand::ctl
