// NHWC max pooling as XLA FFI handlers, for jaxcnn/ops/pooling.py (CPU
// only; float32).
//
// Same math as pooling.py's tap walk: windows of kh x kw taps at strides
// (sh, sw), the input padded with -inf by (pt, pl) at the top/left and as
// far as the output needs at the bottom/right. Per output channel the
// maximum propagates NaN, and the argmax is the first tap (row-major) that
// is strictly greater than every earlier one. A -inf padding tap never
// changes either, so out-of-range taps are skipped instead of padded.
// Leading dimensions before (H, W, C) are one batch axis (vmap adds them).
//
//   Forward:          x -> y
//   ForwardArgmax:    x -> y, tap index (int8)
//   Backward:         g, tap index -> dx (each output's gradient added to
//                     the input element its tap names; the input is zeroed
//                     first)
//
// The batch is split over threads (native_parallel.h). One image's input,
// output and index fit in L2 for the CIFAR pools, and the backward adds
// tap by tap, each a contiguous vector loop over channels, instead of a
// scatter per element (docs/performance.md).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "native_parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using F32 = ffi::Buffer<ffi::F32>;
using S8 = ffi::Buffer<ffi::S8>;

namespace {

struct Geometry {
  int64_t batch, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl;
};

ffi::ErrorOr<Geometry> Geom(ffi::Span<const int64_t> in,
                            ffi::Span<const int64_t> out, int64_t kh,
                            int64_t kw, int64_t sh, int64_t sw, int64_t pt,
                            int64_t pl) {
  size_t r = in.size();
  if (r < 3 || out.size() != r || in[r - 1] != out[r - 1]) {
    return ffi::Unexpected(ffi::Error(
        ffi::ErrorCode::kInvalidArgument,
        "max pool: expected [..., H, W, C] in and out"));
  }
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || pt < 0 || pl < 0 ||
      kh * kw > 127) {
    return ffi::Unexpected(ffi::Error(
        ffi::ErrorCode::kInvalidArgument,
        "max pool: bad window, strides, padding or > 127 taps"));
  }
  int64_t batch = 1;
  for (size_t i = 0; i + 3 < r; ++i) batch *= in[i];
  return Geometry{batch, in[r - 3], in[r - 2], in[r - 1], out[r - 3],
                  out[r - 2], kh, kw, sh, sw, pt, pl};
}

// One image: y (and, if `first`, the tap index) from x.
template <bool kIndex>
void ForwardImage(const Geometry& g, const float* x, float* y,
                  int8_t* first) {
  const int64_t C = g.c;
  for (int64_t a = 0; a < g.oh; ++a) {
    for (int64_t b = 0; b < g.ow; ++b) {
      float* yr = y + (a * g.ow + b) * C;
      int8_t* fr = kIndex ? first + (a * g.ow + b) * C : nullptr;
      for (int64_t c = 0; c < C; ++c) yr[c] = -INFINITY;
      if (kIndex) std::memset(fr, 0, C);
      for (int64_t i = 0; i < g.kh; ++i) {
        int64_t row = a * g.sh + i - g.pt;
        if (row < 0 || row >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          int64_t col = b * g.sw + j - g.pl;
          if (col < 0 || col >= g.w) continue;
          const float* xr = x + (row * g.w + col) * C;
          const int8_t k = static_cast<int8_t>(i * g.kw + j);
          for (int64_t c = 0; c < C; ++c) {
            float t = xr[c], m = yr[c];
            if (kIndex) fr[c] = t > m ? k : fr[c];
            // NaN in, NaN out (XLA's max); otherwise the larger.
            bool take = t > m || (t != t && m == m);
            yr[c] = take ? t : m;
          }
        }
      }
    }
  }
}

void BackwardImage(const Geometry& g, const float* gy, const int8_t* first,
                   float* dx) {
  const int64_t C = g.c;
  std::fill(dx, dx + g.h * g.w * C, 0.0f);
  // Tap-major: every add is a contiguous loop over channels.
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const int8_t k = static_cast<int8_t>(i * g.kw + j);
      for (int64_t a = 0; a < g.oh; ++a) {
        int64_t row = a * g.sh + i - g.pt;
        if (row < 0 || row >= g.h) continue;
        for (int64_t b = 0; b < g.ow; ++b) {
          int64_t col = b * g.sw + j - g.pl;
          if (col < 0 || col >= g.w) continue;
          const float* gr = gy + (a * g.ow + b) * C;
          const int8_t* fr = first + (a * g.ow + b) * C;
          float* dr = dx + (row * g.w + col) * C;
          for (int64_t c = 0; c < C; ++c) dr[c] += fr[c] == k ? gr[c] : 0.0f;
        }
      }
    }
  }
}

ffi::Error Forward(F32 x, ffi::Result<F32> y, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pl) {
  auto geom = Geom(x.dimensions(), y->dimensions(), kh, kw, sh, sw, pt, pl);
  if (geom.has_error()) return geom.error();
  const Geometry g = geom.value();
  const float* xs = x.typed_data();
  float* ys = y->typed_data();
  const int64_t in = g.h * g.w * g.c, out = g.oh * g.ow * g.c;
  jaxcnn::Parallel(g.batch, in, [&](int64_t b0, int64_t n) {
    for (int64_t b = b0; b < b0 + n; ++b) {
      ForwardImage<false>(g, xs + b * in, ys + b * out, nullptr);
    }
  });
  return ffi::Error::Success();
}

ffi::Error ForwardArgmax(F32 x, ffi::Result<F32> y, ffi::Result<S8> first,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                         int64_t pt, int64_t pl) {
  auto geom = Geom(x.dimensions(), y->dimensions(), kh, kw, sh, sw, pt, pl);
  if (geom.has_error()) return geom.error();
  const Geometry g = geom.value();
  const float* xs = x.typed_data();
  float* ys = y->typed_data();
  int8_t* fs = first->typed_data();
  const int64_t in = g.h * g.w * g.c, out = g.oh * g.ow * g.c;
  jaxcnn::Parallel(g.batch, in, [&](int64_t b0, int64_t n) {
    for (int64_t b = b0; b < b0 + n; ++b) {
      ForwardImage<true>(g, xs + b * in, ys + b * out, fs + b * out);
    }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(F32 gy, S8 first, ffi::Result<F32> dx, int64_t kh,
                    int64_t kw, int64_t sh, int64_t sw, int64_t pt,
                    int64_t pl) {
  auto geom = Geom(dx->dimensions(), gy.dimensions(), kh, kw, sh, sw, pt, pl);
  if (geom.has_error()) return geom.error();
  const Geometry g = geom.value();
  const float* gs = gy.typed_data();
  const int8_t* fs = first.typed_data();
  float* ds = dx->typed_data();
  const int64_t in = g.h * g.w * g.c, out = g.oh * g.ow * g.c;
  jaxcnn::Parallel(g.batch, in, [&](int64_t b0, int64_t n) {
    for (int64_t b = b0; b < b0 + n; ++b) {
      BackwardImage(g, gs + b * out, fs + b * out, ds + b * in);
    }
  });
  return ffi::Error::Success();
}

#define JAXCNN_POOL_ATTRS(binding)                                     \
  binding.Attr<int64_t>("kh").Attr<int64_t>("kw").Attr<int64_t>("sh") \
      .Attr<int64_t>("sw").Attr<int64_t>("pt").Attr<int64_t>("pl")

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxcnnPoolForward, Forward,
    JAXCNN_POOL_ATTRS(ffi::Ffi::Bind().Arg<F32>().Ret<F32>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxcnnPoolForwardArgmax, ForwardArgmax,
    JAXCNN_POOL_ATTRS(ffi::Ffi::Bind().Arg<F32>().Ret<F32>().Ret<S8>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxcnnPoolBackward, Backward,
    JAXCNN_POOL_ATTRS(ffi::Ffi::Bind().Arg<F32>().Arg<S8>().Ret<F32>()));
