// wanctl's command line: parses argv, runs one command against wand, prints
// human output or --json, and returns an exit code (ctl/exit_codes.h).
//
//   int rc = ctl::run_wanctl(argc, argv);
#pragma once

namespace wand::ctl {

int run_wanctl(int argc, char** argv);

}  // namespace wand::ctl
