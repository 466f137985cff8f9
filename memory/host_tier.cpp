#include "memory/host_tier.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/log.h"

namespace wand::memory {

HostRegion map_locked_host_region(std::uint64_t bytes) {
  HostRegion r;
  r.bytes = bytes;
  if (bytes == 0) return r;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    throw OutOfMemory("host", bytes, 0, 0, std::string("mmap failed: ") + std::strerror(errno));
  }
  r.data = static_cast<std::byte*>(p);
  if (::mlock(p, bytes) == 0) {
    r.page_locked = true;
    r.how = "mmap+mlock";
  } else {
    const int err = errno;
    r.how = "mmap";
    wand::log::get("mem")->warn("mlock failed bytes={} err={} (host tier stays pageable)",
                                format_bytes(bytes), std::strerror(err));
  }
  r.release = [locked = r.page_locked](std::byte* d, std::uint64_t n) {
    if (locked) ::munlock(d, n);
    ::munmap(d, n);
  };
  return r;
}

HostTier::HostTier(std::uint64_t capacity, const HostRegionFactory& factory)
    : Tier("host", TierKind::kHost, -1, capacity, kAlignment) {
  const std::uint64_t bytes = bytes_capacity();
  region_ = factory ? factory(bytes) : map_locked_host_region(bytes);
  WAND_ASSERT(bytes == 0 || region_.data != nullptr, "host region factory returned no memory");
  WAND_ASSERT(region_.bytes >= bytes, "host region smaller than the tier budget");
  wand::log::get("mem")->info("host tier bytes={} region={} locked={}", format_bytes(bytes),
                              region_.how, region_.page_locked);
}

HostTier::~HostTier() {
  if (region_.data && region_.release) region_.release(region_.data, region_.bytes);
}

}  // namespace wand::memory
