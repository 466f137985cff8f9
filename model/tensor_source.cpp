#include "model/tensor_source.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"

namespace wand::model {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::size_t dtype_size(at::ScalarType t) { return c10::elementSize(t); }

std::string safetensors_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return "F64";
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kShort: return "I16";
    case at::kChar: return "I8";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default:
      throw Error(ErrorCode::kModelFormat,
                  std::string("dtype not representable in safetensors: ") + c10::toString(t));
  }
}

at::ScalarType parse_safetensors_dtype(const std::string& s, const std::string& context) {
  if (s == "F64") return at::kDouble;
  if (s == "F32") return at::kFloat;
  if (s == "F16") return at::kHalf;
  if (s == "BF16") return at::kBFloat16;
  if (s == "I64") return at::kLong;
  if (s == "I32") return at::kInt;
  if (s == "I16") return at::kShort;
  if (s == "I8") return at::kChar;
  if (s == "U8") return at::kByte;
  if (s == "BOOL") return at::kBool;
  if (s.rfind("F8_", 0) == 0) {  // F8_E4M3 is read by SafetensorsFile itself (model/fp8.h)
    throw Error(ErrorCode::kModelFormat, context + ": stored as " + s +
                                             " (fp8), which wand does not read here; wand reads F8_E4M3 "
                                             "(fp8_e4m3fn) DiT weights only, and no other fp8 format");
  }
  throw Error(ErrorCode::kModelFormat, context + ": unsupported dtype '" + s + "'");
}

void read_exact(const std::string& path, std::uint64_t offset, void* dst, std::uint64_t nbytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorCode::kIo, "open " + path + ": " + std::strerror(errno));
  }
  auto* p = static_cast<char*>(dst);
  std::uint64_t done = 0;
  while (done < nbytes) {
    ssize_t n = ::pread(fd, p + done, nbytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw Error(ErrorCode::kIo, "read " + path + " at offset " + std::to_string(offset + done) +
                                      ": " + std::strerror(e));
    }
    if (n == 0) {
      ::close(fd);
      throw Error(ErrorCode::kIo, "read " + path + ": file ends at offset " +
                                      std::to_string(offset + done) + ", expected " +
                                      std::to_string(offset + nbytes) + " (truncated?)");
    }
    done += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
}

}  // namespace wand::model
