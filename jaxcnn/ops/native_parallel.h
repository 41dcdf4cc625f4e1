// The one threading helper of jaxcnn's C++ kernels (lrn_kernel.cc,
// pool_kernel.cc): plain std::threads started per call, because XLA's own
// pool is not reachable from an FFI handler's C API, and one call's work
// (milliseconds) dwarfs a thread's start (~20-50 us).
#ifndef JAXCNN_OPS_NATIVE_PARALLEL_H_
#define JAXCNN_OPS_NATIVE_PARALLEL_H_

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace jaxcnn {

// Runs fn(first_row, n_rows) over [0, rows) (C floats of work per row) on
// up to hardware_concurrency threads, the calling thread taking the first
// share. Small inputs stay on one thread.
template <typename Fn>
void Parallel(int64_t rows, int64_t C, Fn fn) {
  int64_t n = std::max<int64_t>(1, std::thread::hardware_concurrency());
  n = std::min<int64_t>(n, std::max<int64_t>(1, rows * C / (1 << 15)));
  n = std::min<int64_t>(n, std::max<int64_t>(rows, 1));
  int64_t per = (rows + n - 1) / std::max<int64_t>(n, 1);
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < n; ++i) {
    int64_t lo = i * per, hi = std::min(rows, lo + per);
    if (lo < hi) pool.emplace_back(fn, lo, hi - lo);
  }
  fn(0, std::min(rows, per));
  for (auto& t : pool) t.join();
}

}  // namespace jaxcnn

#endif  // JAXCNN_OPS_NATIVE_PARALLEL_H_
