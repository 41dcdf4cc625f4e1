// oneDNN 2-D convolutions as XLA FFI handlers, for jaxcnn/ops/conv.py.
//
// Layouts are JAX's: activations NHWC, kernels HWIO, float32. Three handlers
// (forward, gradient w.r.t. the input, gradient w.r.t. the kernel) take the
// strides and the explicit low/high paddings as attributes, and `bf16`: when
// 1, the two inputs of the primitive are rounded to bfloat16 (reorders into
// per-thread buffers) and oneDNN multiplies in bf16, accumulating and
// writing float32 (AVX512_BF16's dot products; oneDNN's fpmath_mode=bf16
// was measured to keep the f32 kernel on such a CPU without AMX). Float32
// activations stay NHWC (oneDNN's brgemm kernels take it directly); kernels
// are reordered to the layout oneDNN picks, which costs little (they are
// small). Why these layouts: measured per conv on the 2-core dev CPU,
// docs/performance.md.
//
// Primitives are cached per (kind, bf16, geometry); each thread has its own
// scratchpad and buffers, so one primitive can run from two XLA threads.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;
using F32 = ffi::Buffer<ffi::F32>;

namespace {

enum Kind { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// bf16, N, H, W, C, OH, OW, O, KH, KW, strides (2), pads lo (2), pads hi (2).
using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t>;

struct Geometry {
  memory::dims src, wei, dst, strides, pad_lo, pad_hi;
  bool bf16;
};

struct Cached {
  dnnl::primitive prim;
  memory::desc weights;     // the kernel (or its gradient) as oneDNN wants it
  memory::desc src, dst;    // the activations (or their gradients) as read
  memory::desc scratchpad;
};

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

memory::desc Desc(const memory::dims& d, Tag tag, bool bf16 = false) {
  return memory::desc(
      d, bf16 ? memory::data_type::bf16 : memory::data_type::f32, tag);
}

dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The forward primitive (or a backward one's hint). With g.bf16 its inputs
// (src, weights) are bf16 and its output float32.
dnnl::convolution_forward::primitive_desc ForwardPd(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training,
      dnnl::algorithm::convolution_direct, Desc(g.src, Tag::nhwc, g.bf16),
      Desc(g.wei, Tag::any, g.bf16), Desc(g.dst, Tag::nhwc), g.strides,
      g.pad_lo, g.pad_hi, Attr());
}

// Each primitive reads its two inputs in bf16 when g.bf16 and writes its
// output in float32: backward-data reads diff_dst and the weights,
// backward-weights reads src and diff_dst.
Cached Build(Kind kind, const Geometry& g) {
  auto fwd = ForwardPd(g);
  if (kind == kForward) {
    return {dnnl::convolution_forward(fwd), fwd.weights_desc(),
            fwd.src_desc(), fwd.dst_desc(), fwd.scratchpad_desc()};
  }
  if (kind == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Desc(g.src, Tag::nhwc),
        Desc(g.wei, Tag::any, g.bf16), Desc(g.dst, Tag::nhwc, g.bf16),
        g.strides, g.pad_lo, g.pad_hi, fwd, Attr());
    return {dnnl::convolution_backward_data(pd), pd.weights_desc(),
            pd.diff_src_desc(), pd.diff_dst_desc(), pd.scratchpad_desc()};
  }
  // bf16 inputs pass through a reorder anyway, so oneDNN picks their
  // layout: blocked, its filter gradient of AlexNet's convs took 39-63 ms
  // against 45-87 ms from NHWC. In float32 blocking them measured slower
  // (an extra pass, the same jit kernel).
  Tag in = g.bf16 ? Tag::any : Tag::nhwc;
  dnnl::convolution_backward_weights::primitive_desc pd(
      Engine(), dnnl::algorithm::convolution_direct,
      Desc(g.src, in, g.bf16), Desc(g.wei, Tag::any),
      Desc(g.dst, in, g.bf16), g.strides, g.pad_lo, g.pad_hi, fwd,
      Attr());
  return {dnnl::convolution_backward_weights(pd), pd.diff_weights_desc(),
          pd.src_desc(), pd.diff_dst_desc(), pd.scratchpad_desc()};
}

const Cached& Lookup(Kind kind, const Geometry& g) {
  static std::mutex mu;
  static auto* cache = new std::map<Key, Cached>();
  Key key{kind,         g.bf16,       g.src[0],     g.src[2],     g.src[3],
          g.src[1],     g.dst[2],     g.dst[3],     g.dst[1],
          g.wei[2],     g.wei[3],     g.strides[0], g.strides[1],
          g.pad_lo[0],  g.pad_lo[1],  g.pad_hi[0],  g.pad_hi[1]};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it == cache->end()) it = cache->emplace(key, Build(kind, g)).first;
  return it->second;
}

// x: N,H,W,C; w: KH,KW,C,O; y: N,OH,OW,O (oneDNN dims are N,C,H,W order).
Geometry Geom(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
              ffi::Span<const int64_t> y, int64_t sh, int64_t sw,
              int64_t pt, int64_t pb, int64_t pl, int64_t pr,
              int64_t bf16) {
  return {{x[0], x[3], x[1], x[2]}, {w[3], w[2], w[0], w[1]},
          {y[0], y[3], y[1], y[2]}, {sh, sw}, {pt, pl}, {pb, pr}, bf16 != 0};
}

// Per-thread buffers, grown as needed and reused: a fresh one per call
// would be page-faulted in every step.
char* Grow(std::vector<char>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Runs the cached primitive of (kind, g). `buffers`: (oneDNN argument, JAX
// buffer) for the two NHWC activations; `kernel` is JAX's HWIO buffer, passed
// through a reorder to (or, for the kernel gradient, from) oneDNN's layout.
// Every oneDNN call of a handler happens in here, under one catch.
ffi::Error Run(Kind kind, const Geometry& g, void* kernel,
               std::vector<std::pair<int, void*>> buffers,
               int kernel_arg) try {
  const Cached& c = Lookup(kind, g);
  auto& eng = Engine();
  auto& strm = Stream();
  thread_local std::vector<char> scratch, kernel_copy, rounded[2];
  std::unordered_map<int, memory> args;
  int n_rounded = 0;
  for (auto& [arg, data] : buffers) {
    bool is_src = arg == DNNL_ARG_SRC || arg == DNNL_ARG_DIFF_SRC;
    memory user(Desc(is_src ? g.src : g.dst, Tag::nhwc), eng, data);
    const memory::desc& want = is_src ? c.src : c.dst;
    if (want == user.get_desc()) {
      args[arg] = user;
      continue;
    }
    // An input the primitive reads in bf16 (outputs are always float32).
    memory lib(want, eng, Grow(rounded[n_rounded++], want.get_size()));
    dnnl::reorder(user, lib).execute(strm, user, lib);
    args[arg] = lib;
  }
  memory user(Desc(g.wei, Tag::hwio), eng, kernel);
  memory lib = c.weights == user.get_desc()
                   ? user
                   : memory(c.weights, eng,
                            Grow(kernel_copy, c.weights.get_size()));
  bool to_lib = kernel_arg == DNNL_ARG_WEIGHTS;
  if (to_lib && lib != user) dnnl::reorder(user, lib).execute(strm, user, lib);
  args[kernel_arg] = lib;
  args[DNNL_ARG_SCRATCHPAD] =
      memory(c.scratchpad, eng, Grow(scratch, c.scratchpad.get_size() + 1));
  c.prim.execute(strm, args);
  if (!to_lib && lib != user) dnnl::reorder(lib, user).execute(strm, lib, user);
  strm.wait();
  return ffi::Error::Success();
} catch (const dnnl::error& e) {
  return ffi::Error(ffi::ErrorCode::kInternal,
                    std::string("oneDNN convolution: ") + e.what());
}

ffi::Error Forward(F32 x, F32 w, ffi::Result<F32> y, int64_t sh, int64_t sw,
                   int64_t pt, int64_t pb, int64_t pl, int64_t pr,
                   int64_t bf16) {
  Geometry g = Geom(x.dimensions(), w.dimensions(), y->dimensions(), sh, sw,
                    pt, pb, pl, pr, bf16);
  return Run(kForward, g, w.untyped_data(),
             {{DNNL_ARG_SRC, x.untyped_data()},
              {DNNL_ARG_DST, y->untyped_data()}},
             DNNL_ARG_WEIGHTS);
}

ffi::Error BackwardData(F32 dy, F32 w, ffi::Result<F32> dx, int64_t sh,
                        int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                        int64_t pr, int64_t bf16) {
  Geometry g = Geom(dx->dimensions(), w.dimensions(), dy.dimensions(), sh, sw,
                    pt, pb, pl, pr, bf16);
  return Run(kBackwardData, g, w.untyped_data(),
             {{DNNL_ARG_DIFF_DST, dy.untyped_data()},
              {DNNL_ARG_DIFF_SRC, dx->untyped_data()}},
             DNNL_ARG_WEIGHTS);
}

ffi::Error BackwardWeights(F32 x, F32 dy, ffi::Result<F32> dw, int64_t sh,
                           int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                           int64_t pr, int64_t bf16) {
  Geometry g = Geom(x.dimensions(), dw->dimensions(), dy.dimensions(), sh, sw,
                    pt, pb, pl, pr, bf16);
  return Run(kBackwardWeights, g, dw->untyped_data(),
             {{DNNL_ARG_SRC, x.untyped_data()},
              {DNNL_ARG_DIFF_DST, dy.untyped_data()}},
             DNNL_ARG_DIFF_WEIGHTS);
}

#define JAXCNN_CONV_ATTRS(binding)                                     \
  binding.Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt") \
      .Attr<int64_t>("pb").Attr<int64_t>("pl").Attr<int64_t>("pr")       \
      .Attr<int64_t>("bf16")

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxcnnDnnlConvForward, Forward,
    JAXCNN_CONV_ATTRS(ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxcnnDnnlConvBackwardData, BackwardData,
    JAXCNN_CONV_ATTRS(ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxcnnDnnlConvBackwardWeights, BackwardWeights,
    JAXCNN_CONV_ATTRS(ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>()));

// Loaded through ctypes: the oneDNN version, to check the library works.
extern "C" int jaxcnn_dnnl_version() {
  const dnnl_version_t* v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}

// 1 when oneDNN runs bf16 dot products natively here (AVX512_BF16, AMX and
// later ISAs, whose feature masks contain avx512_core_bf16's); elsewhere
// bf16 convolutions would be emulated, slower than float32.
extern "C" int jaxcnn_dnnl_native_bf16() {
  unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  unsigned need = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  return (isa & need) == need;
}
