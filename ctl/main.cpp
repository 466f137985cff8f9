// wanctl: the command-line client of wand. Thin main; see ctl/cli.h.
#include "ctl/cli.h"

int main(int argc, char** argv) { return wand::ctl::run_wanctl(argc, argv); }
