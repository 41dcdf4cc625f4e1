// Does running a convolution's two gradients at once beat running them one
// after the other? For benchmarks/conv_overlap.py (issue 18).
//
// TF runs a conv's input and filter gradients concurrently (inter-op
// parallelism); XLA runs jaxcnn's oneDNN calls one at a time, each on both
// cores. This times, for one geometry (batch 128, NHWC, stride 1, SAME),
// oneDNN's backward-data and backward-weights primitives sequentially on one
// stream and concurrently on two threads with a stream each. Run it pinned to
// one core as well: if one thread takes twice the two-thread time, the
// library already uses both cores fully and overlap has nothing to win.
#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "dnnl.hpp"

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

double Now() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

// out: median ms of [input grad alone, filter grad alone, both sequential,
// both concurrent]. Returns 0, or 1 on a oneDNN error.
extern "C" int jaxcnn_conv_overlap(int h, int c, int o, int k, int reps,
                                   double* out) try {
  const int n = 128, p = k / 2;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  memory::dims src{n, c, h, h}, wei{o, c, k, k}, dst{n, o, h, h};
  memory::dims one{1, 1}, pad{p, p};
  auto f32 = memory::data_type::f32;
  memory::desc sd(src, f32, Tag::nhwc), dd(dst, f32, Tag::nhwc),
      wany(wei, f32, Tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto algo = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, algo, sd, wany, dd, one, pad,
      pad, attr);
  dnnl::convolution_backward_data::primitive_desc bdp(
      eng, algo, sd, wany, dd, one, pad, pad, fwd, attr);
  dnnl::convolution_backward_weights::primitive_desc bwp(
      eng, algo, sd, wany, dd, one, pad, pad, fwd, attr);
  std::vector<float> x(sd.get_size() / 4, 0.5f), dx(x.size());
  std::vector<float> dy(dd.get_size() / 4, 0.25f);
  std::vector<float> w(bdp.weights_desc().get_size() / 4, 0.1f);
  std::vector<float> dw(bwp.diff_weights_desc().get_size() / 4);
  std::vector<char> s1(bdp.scratchpad_desc().get_size() + 1);
  std::vector<char> s2(bwp.scratchpad_desc().get_size() + 1);
  dnnl::convolution_backward_data bd(bdp);
  dnnl::convolution_backward_weights bw(bwp);
  auto run_bd = [&](dnnl::stream& s) {
    bd.execute(s, {{DNNL_ARG_DIFF_DST, memory(dd, eng, dy.data())},
                   {DNNL_ARG_WEIGHTS, memory(bdp.weights_desc(), eng, w.data())},
                   {DNNL_ARG_DIFF_SRC, memory(sd, eng, dx.data())},
                   {DNNL_ARG_SCRATCHPAD,
                    memory(bdp.scratchpad_desc(), eng, s1.data())}});
    s.wait();
  };
  auto run_bw = [&](dnnl::stream& s) {
    bw.execute(s, {{DNNL_ARG_DIFF_DST, memory(dd, eng, dy.data())},
                   {DNNL_ARG_SRC, memory(sd, eng, x.data())},
                   {DNNL_ARG_DIFF_WEIGHTS,
                    memory(bwp.diff_weights_desc(), eng, dw.data())},
                   {DNNL_ARG_SCRATCHPAD,
                    memory(bwp.scratchpad_desc(), eng, s2.data())}});
    s.wait();
  };
  dnnl::stream sa(eng), sb(eng);
  for (int r = 0; r < 2; ++r) {  // warm-up: kernels JIT-ed, pages touched
    run_bd(sa);
    run_bw(sa);
  }
  std::vector<double> t_bd, t_bw, t_seq, t_par;
  for (int r = 0; r < reps; ++r) {
    double t0 = Now();
    run_bd(sa);
    double t1 = Now();
    run_bw(sa);
    double t2 = Now();
    std::thread other([&] { run_bw(sb); });
    run_bd(sa);
    other.join();
    double t3 = Now();
    t_bd.push_back(t1 - t0);
    t_bw.push_back(t2 - t1);
    t_seq.push_back(t2 - t0);
    t_par.push_back(t3 - t2);
  }
  out[0] = Median(t_bd);
  out[1] = Median(t_bw);
  out[2] = Median(t_seq);
  out[3] = Median(t_par);
  return 0;
} catch (const dnnl::error&) {
  return 1;
}
