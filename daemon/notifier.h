// Notifier: systemd integration through libsystemd (no-op without it, or when
// not started by systemd): READY/STOPPING/RELOADING, STATUS lines, WATCHDOG
// pings, and socket activation (LISTEN_FDS).
//
//   Notifier n;
//   int fd = Notifier::listen_fd();        // -1 when not socket-activated
//   n.ready("queued=0 running=0");
//   if (n.watchdog_interval_ms() > 0) ... n.watchdog();
//
// Threads: any; sd_notify is a datagram send.
#pragma once

#include <string>

namespace wand::daemon {

class Notifier {
 public:
  Notifier();
  void ready(const std::string& status);
  void status(const std::string& status);
  void reloading();
  void stopping();
  void watchdog();
  // Half the WatchdogSec systemd asked for, 0 when no watchdog is set.
  long watchdog_interval_ms() const { return watchdog_interval_ms_; }
  // The first inherited listening socket (LISTEN_FDS for this pid), or -1.
  // Throws Error(kConfig) when the inherited fd is not a listening unix socket.
  static int listen_fd();

 private:
  long watchdog_interval_ms_ = 0;
};

}  // namespace wand::daemon
