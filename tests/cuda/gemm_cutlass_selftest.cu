// Standalone test of gemm_cutlass (csrc/cuda/gemm_cutlass.h): int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights
// in the packed layout, every mode the format has, float16 / bfloat16, groups of 64, 128 and K, odd M, with and
// without bias, against a float64 reference of kernel_api.h's dequantization (the table formats' exact float32
// values), outputs poisoned. The bound per output: the reference rounds each weight once to A's type; CUTLASS
// rounds code * S and then + Z (code: its conversion's, a table value rounded to A's type; S and Z themselves
// rounded to A's type), so |C - ref| <= sum_k |a_k| (u |code S| + u |Z| + 2 u |w| + u |Z|) + u |C| +
// 32 K u^2 sum |a w|, u the unit roundoff of A's type (fp32 sums of exact products); K split (in batches, or in
// the stream-K tiles' kernel), the float32 partials sum in a fixed order (within the same bound). `--time M N K [fp16|bf16 [TILE SPLIT]]` times the kernel alone; `--one M N K TILE SPLIT
// [fresh]` runs one case (fresh: nothing poisoned and C read back on the device, for initcheck). The persistent
// tiles' GEMM launches as the group terms kernel's programmatic dependent, as in the library; BITBLAS_JAX_PDL=0
// launches it as usual.
//
//   nvcc -std=c++17 -O3 -DNDEBUG -DBITBLAS_JAX_CUTLASS --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a \
//     -Xcompiler -fopenmp -Icsrc/include -Icsrc/cuda -I<cutlass>/include -I<cutlass>/tools/util/include \
//     tests/cuda/gemm_cutlass_selftest.cu csrc/cuda/gemm_cutlass.cu csrc/cuda/inst_gemm_cutlass_*.cu \
//     -o /tmp/gct -lgomp
// (tools/gpu_check.sh, step selftest, builds and runs it)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bitblas_jax/layout.h"
#include "bitblas_jax/plan.h"
#include "gemm_cutlass.h"

using namespace bitblas_jax;

namespace {

// the library's rule (matmul_cuda.cu device_info): programmatic dependent launch unless BITBLAS_JAX_PDL=0
bool use_pdl() {
  const char* env = std::getenv("BITBLAS_JAX_PDL");
  return !(env != nullptr && std::string(env) == "0");
}

#define CHECK(x)                                                                                 \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::printf("CUDA error %s at line %d\n", cudaGetErrorString(e_), __LINE__);               \
      std::exit(2);                                                                              \
    }                                                                                            \
  } while (0)

uint16_t to_bits(float v, bool bf16) {
  if (bf16) { __nv_bfloat16 b = __float2bfloat16(v); uint16_t r; std::memcpy(&r, &b, 2); return r; }
  __half h = __float2half(v); uint16_t r; std::memcpy(&r, &h, 2); return r;
}
float from_bits(uint16_t x, bool bf16) {
  if (bf16) { __nv_bfloat16 b; std::memcpy(&b, &x, 2); return __bfloat162float(b); }
  __half h; std::memcpy(&h, &x, 2); return __half2float(h);
}
float round_to(float v, bool bf16) { return from_bits(to_bits(v, bf16), bf16); }

struct Dev {
  std::vector<void*> ptrs;
  template <class V> void* put(const std::vector<V>& v) {
    void* p = nullptr;
    CHECK(cudaMalloc(&p, std::max<size_t>(16, v.size() * sizeof(V))));
    if (!v.empty()) CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(V), cudaMemcpyHostToDevice));
    ptrs.push_back(p);
    return p;
  }
  ~Dev() { for (void* p : ptrs) cudaFree(p); }
};

// Reads every element of C on the device (a checksum no one needs): with C fresh, compute-sanitizer's initcheck
// then says whether it counts the epilogue's stores to C (TMA bulk stores where split is 1) as writes.
__global__ void read_back_kernel(const uint16_t* C, int64_t count, unsigned* sum) {
  unsigned s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    s += C[i];
  atomicAdd(sum, s);
}

// poison: C and the workspace filled first so an unwritten element fails the bound (false: left as cudaMalloc
// gives them, for compute-sanitizer's initcheck, which then sees only the kernels' writes). inputs_offset: scale
// and zeros start that many elements into their allocations, as a slice's would (the group terms kernel's loads
// narrow to the alignment they get).
bool check(WFormat wf, ScaleMode mode, bool bf16, int64_t M, int64_t N, int64_t K, int64_t gs, bool bias, int tile,
           int split, std::mt19937_64& rng, bool poison = true, int64_t inputs_offset = 0) {
  const int bits = format_bits(wf);
  const bool is_signed = format_is_signed_int(wf), integer = format_is_integer(wf);
  const int levels = 1 << bits, stored_off = is_signed ? levels / 2 : 0;  // integer value = stored code - stored_off
  const int val_off = plan::gemm_cutlass_value_offset(wf);                  // value = conversion's code - val_off
  const float* table = wf == WFormat::kNF4 ? kNF4Values : wf == WFormat::kFP4E2M1 ? kFP4E2M1Values : nullptr;
  const int64_t G = K / gs;
  const double u = bf16 ? 0x1p-8 : 0x1p-11;
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<double> value(N * K);
  std::vector<uint8_t> packed(N * K * bits / 8, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int code = static_cast<int>(rng() % levels);
      value[n * K + k] = integer ? code - stored_off : table[code];
      const auto slot = layout::code_slot(K, bits, n, k);
      packed[slot.byte + slot.shift / 8] |= static_cast<uint8_t>(code << (slot.shift % 8));
    }
  std::vector<uint16_t> A(M * K), S(N * G), Zt(N * G), B(N);
  std::vector<uint8_t> Zq(N * G);
  std::vector<float> Af(M * K), Sf(N * G), Zf(N * G), Bf(N);
  for (int64_t i = 0; i < M * K; ++i) Af[i] = round_to(uni(rng), bf16), A[i] = to_bits(Af[i], bf16);
  for (int64_t i = 0; i < N * G; ++i) {
    Sf[i] = round_to(0.01f + 0.02f * std::fabs(uni(rng)), bf16), S[i] = to_bits(Sf[i], bf16);
    Zf[i] = round_to(uni(rng) * (mode == ScaleMode::kRescale ? 0.1f : 4.f), bf16), Zt[i] = to_bits(Zf[i], bf16);
    Zq[i] = static_cast<uint8_t>(static_cast<int>(rng() % levels) - stored_off);
  }
  for (int64_t n = 0; n < N; ++n) Bf[n] = round_to(uni(rng), bf16), B[n] = to_bits(Bf[n], bf16);

  Dev d;
  MatmulArgs a;
  a.M = M, a.N = N, a.K = K, a.w_format = wf, a.a_dtype = a.out_dtype = bf16 ? DType::kBF16 : DType::kF16;
  a.accum_dtype = DType::kF32, a.mode = mode, a.group_size = gs;
  a.A = d.put(A), a.W = static_cast<const uint8_t*>(d.put(packed));
  const auto put_at_offset = [&](const auto& v) -> const void* {
    auto shifted = v;
    shifted.insert(shifted.begin(), inputs_offset, 0);
    return static_cast<const uint8_t*>(d.put(shifted)) + inputs_offset * sizeof(v[0]);
  };
  a.scale = mode == ScaleMode::kNone ? nullptr : put_at_offset(S);
  a.zeros = mode == ScaleMode::kQuantized ? put_at_offset(Zq) : mode >= ScaleMode::kOriginal ? put_at_offset(Zt) : nullptr;
  a.bias = bias ? d.put(B) : nullptr;
  if (poison) {
    std::vector<uint16_t> nan(M * N, 0x7e00);   // fp16 NaN, bf16 about 4e37: an unwritten output fails the bound
    a.C = d.put(nan);
  } else {
    void* c = nullptr;
    CHECK(cudaMalloc(&c, M * N * 2));
    d.ptrs.push_back(c);
    a.C = c;
  }
  const size_t ws_bytes = plan::gemm_cutlass_workspace_bytes(
      M, N, K, plan::gemm_cutlass_terms_group(static_cast<int>(mode), gs, K, tile, split), tile, split);
  void* ws = nullptr;
  CHECK(cudaMalloc(&ws, ws_bytes));
  d.ptrs.push_back(ws);
  if (poison) {
    std::vector<uint8_t> ws_poison(ws_bytes, 0x7f);   // partials of about 3e38: one left unwritten fails the bound
    CHECK(cudaMemcpy(ws, ws_poison.data(), ws_bytes, cudaMemcpyHostToDevice));
  }
  const std::string err = launch_gemm_cutlass(a, tile, split, use_pdl(), ws, ws_bytes, 0);
  char what[200];
  std::snprintf(what, sizeof what, "%s %s mode %d g%ld M=%ld N=%ld K=%ld bias %d tile %d split %d",
                format_name(wf), bf16 ? "bf16" : "fp16", static_cast<int>(mode), (long)gs, (long)M, (long)N,
                (long)K, bias, tile, split);
  if (!err.empty()) { std::printf("FAIL %s: %s\n", what, err.c_str()); return false; }
  CHECK(cudaDeviceSynchronize());
  if (!poison) {
    unsigned* sum = nullptr;
    CHECK(cudaMalloc(&sum, sizeof(unsigned)));
    d.ptrs.push_back(sum);
    CHECK(cudaMemset(sum, 0, sizeof(unsigned)));
    read_back_kernel<<<64, 256>>>(static_cast<const uint16_t*>(a.C), M * N, sum);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
  }
  std::vector<uint16_t> C(M * N);
  CHECK(cudaMemcpy(C.data(), a.C, C.size() * 2, cudaMemcpyDeviceToHost));
  // the float64 reference and its bound per output, rows in parallel (OpenMP where built with it), then the
  // verdict in order
  std::vector<double> ref_of(M * N), bound_of(M * N);
#pragma omp parallel for schedule(dynamic)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0, bound = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = n * G + k / gs;
        const double s = mode == ScaleMode::kNone ? 1.0 : Sf[g];
        const double v = value[n * K + k];
        const double code = v + val_off;
        double w = v * s, z = -val_off * s;
        if (mode == ScaleMode::kOriginal) w = (v - Zf[g]) * s, z = -(Zf[g] + val_off) * s;
        if (mode == ScaleMode::kRescale) w = v * s - Zf[g], z = -val_off * s - Zf[g];
        if (mode == ScaleMode::kQuantized) {
          const int q = is_signed ? static_cast<int>(static_cast<int8_t>(Zq[g])) : Zq[g];
          w = (v - q) * s, z = -(q + val_off) * s;
        }
        const double wr = round_to(static_cast<float>(w), bf16);
        const double x = Af[m * K + k];
        ref += x * wr;
        mag += std::fabs(x * w);
        bound += std::fabs(x) * (u * std::fabs(code * s) + 2 * u * std::fabs(z) + 2 * u * std::fabs(w));
      }
      if (bias) ref += Bf[n];
      ref_of[m * N + n] = ref;
      bound_of[m * N + n] = bound + u * std::fabs(ref) + 32.0 * K * u * u * mag + 1e-30;
    }
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < M * N; ++i) {
    const double got = from_bits(C[i], bf16), ref = ref_of[i], bound = bound_of[i];
    const double e = std::fabs(got - ref);
    if (!(e <= bound)) {
      if (bad < 3)
        std::printf("  %s: C[%ld, %ld] = %.6g, expected %.6g (bound %.3g)\n", what, (long)(i / N), (long)(i % N), got,
                    ref, bound);
      ++bad;
    } else {
      worst = std::max(worst, e / bound);
    }
  }
  std::printf("%s %s: %ld wrong, worst %.2f of the bound\n", bad ? "FAIL" : "ok  ", what, (long)bad, worst);
  return bad == 0;
}

// The weight format a timing line names (formats_generated.h format_name: int4, int8, nf4, fp4_e2m1, ...); an
// unknown name ends the run.
WFormat timed_format(const std::string& name) {
  for (int f = 0; f < kNumWFormats; ++f)
    if (name == format_name(static_cast<WFormat>(f))) return static_cast<WFormat>(f);
  std::printf("unknown weight format '%s' (a name of formats.py)\n", name.c_str());
  std::exit(2);
}

// tile, split: forced (tile >= 0), else the plan's choice; wf: int4, int8, nf4 or fp4_e2m1 weights (scale g128).
int time_case(int64_t M, int64_t N, int64_t K, bool bf16, int tile, int split, WFormat wf) {
  const int bits = format_bits(wf);
  std::mt19937_64 rng(7);
  const int64_t gs = 128, G = K / gs;
  const int64_t w_bytes = N * K * bits / 8;
  const int copies = static_cast<int>(std::max<int64_t>(2, (256ll << 20) / w_bytes + 1));
  static std::vector<uint8_t> packed;  // random codes, kept for the next case of the same size (--time-list)
  if (packed.size() != static_cast<size_t>(w_bytes)) {
    packed.resize(w_bytes);
    for (auto& b : packed) b = static_cast<uint8_t>(rng());
  }
  std::vector<uint16_t> A(M * K, to_bits(0.5f, bf16)), S(N * G, to_bits(0.01f, bf16));
  Dev d;
  std::vector<void*> w(copies);
  for (auto& p : w) p = d.put(packed);
  MatmulArgs a;
  a.M = M, a.N = N, a.K = K, a.w_format = wf;
  a.a_dtype = a.out_dtype = bf16 ? DType::kBF16 : DType::kF16;
  a.mode = ScaleMode::kScale, a.group_size = gs, a.A = d.put(A), a.scale = d.put(S);
  std::vector<uint16_t> C(M * N);
  a.C = d.put(C);
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  if (tile < 0) {
    const plan::CutlassChoice c =
        plan::gemm_cutlass_choice(M, N, K, static_cast<int>(a.mode), gs, sms, plan::kCutlassMaxSplit,
                                  plan::CutlassStreamK::kByModel, plan::gemm_cutlass_table_codes(wf));
    tile = c.tile, split = static_cast<int>(c.split);
  }
  const size_t ws_bytes = plan::gemm_cutlass_workspace_bytes(M, N, K, gs, tile, split);
  void* ws = nullptr;
  CHECK(cudaMalloc(&ws, ws_bytes));
  d.ptrs.push_back(ws);
  std::string err;
  auto launch = [&](int i) {
    a.W = static_cast<const uint8_t*>(w[i % copies]);
    if (err.empty()) err = launch_gemm_cutlass(a, tile, split, use_pdl(), ws, ws_bytes, 0);
  };
  for (int i = 0; i < 2 * copies; ++i) launch(i);
  if (!err.empty()) {
    std::printf("--time M=%ld N=%ld K=%ld tile %d split %d: %s\n", (long)M, (long)N, (long)K, tile, split, err.c_str());
    return 2;
  }
  cudaEvent_t t0, t1;
  CHECK(cudaEventCreate(&t0));
  CHECK(cudaEventCreate(&t1));
  std::vector<float> per;
  for (int b = 0; b < 11; ++b) {
    CHECK(cudaEventRecord(t0));
    for (int i = 0; i < copies; ++i) launch(i);
    CHECK(cudaEventRecord(t1));
    CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, t0, t1));
    per.push_back(1e3f * ms / copies);
  }
  std::sort(per.begin(), per.end());
  const double us = per[per.size() / 2];
  std::printf("time gemm_cutlass %s %s g128 M=%ld N=%ld K=%ld tile %d split %d: %.2f us, %.0f TFLOP/s (group "
              "terms and the split's reduction included)\n",
              bf16 ? "bf16" : "fp16", format_name(wf), (long)M, (long)N, (long)K, tile, split, us, 2.0 * M * N * K / us / 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // --one M N K TILE SPLIT [fresh]: one int4 scale g128 fp16 case with bias (fresh: C and the workspace not
  // poisoned, for initcheck)
  if (argc >= 7 && std::string(argv[1]) == "--one") {
    std::mt19937_64 one_rng(11);
    return check(WFormat::kInt4, ScaleMode::kScale, false, std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]),
                 128, true, std::atoi(argv[5]), std::atoi(argv[6]), one_rng, !(argc > 7 && std::string(argv[7]) == "fresh"))
               ? 0 : 1;
  }
  // --time-list: one --time case per line of stdin, "M N K fp16|bf16 TILE SPLIT WEIGHTS" (a sweep in one process;
  // tools/gemm_cutlass_sweep.py writes the lines)
  if (argc == 2 && std::string(argv[1]) == "--time-list") {
    long long M, N, K;
    char dtype[8], weights[32];
    int tile, split;
    while (std::scanf("%lld %lld %lld %7s %d %d %31s", &M, &N, &K, dtype, &tile, &split, weights) == 7)
      time_case(M, N, K, std::string(dtype) == "bf16", tile, split, timed_format(weights));
    return 0;
  }
  // --time M N K [fp16|bf16 [TILE SPLIT [WEIGHTS]]]: the kernel alone (TILE -1 or none: the plan's choice; WEIGHTS
  // a format name, int4 by default)
  if (argc >= 5 && std::string(argv[1]) == "--time")
    return time_case(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]), argc > 5 && std::string(argv[5]) == "bf16",
                     argc > 7 ? std::atoi(argv[6]) : -1, argc > 7 ? std::atoi(argv[7]) : 1, timed_format(argc > 8 ? argv[8] : "int4"));
  std::mt19937_64 rng(2026);
  bool ok = true;
  int cases = 0;
  for (bool bf16 : {false, true})
    for (WFormat wf : {WFormat::kInt4, WFormat::kUInt4, WFormat::kInt8, WFormat::kUInt8, WFormat::kNF4,
                       WFormat::kFP4E2M1})
      for (ScaleMode mode : {ScaleMode::kNone, ScaleMode::kScale, ScaleMode::kOriginal, ScaleMode::kRescale,
                             ScaleMode::kQuantized})
        for (int64_t gs : {int64_t(64), int64_t(128), int64_t(-1)}) {
          if (!format_allows_mode(wf, mode)) continue;
          const int64_t K = 1024, g = gs < 0 ? K : gs;
          for (int64_t M : {int64_t(1), int64_t(37), int64_t(200)}) {
            ++cases;
            // every tile; K split 1, 2, 4 or 8 ways where the tile splits (halved to parts of whole groups, or,
            // on the stream-K tiles, split in the kernel, to parts of at least 8 stages); unsplit, the stream-K
            // tiles share these few tiles' 16 stages among up to 8 CTAs
            // (the table formats' units hold no 256-row tiles: their turn goes to the 128 x 128 one)
            int tile = static_cast<int>(cases % plan::kNumCutlassTiles);
            if (!format_is_integer(wf) && !plan::gemm_cutlass_tile_takes_tables(tile)) tile = 1;
            int split = 1 << (cases / plan::kNumCutlassTiles % 4);
            while (!plan::gemm_cutlass_split_ok(static_cast<int>(mode), g, K, tile, split)) split /= 2;
            ok &= check(wf, mode, bf16, M, 272, K, g, (M + g) % 2 == 1, tile, split, rng);
          }
        }
  ok &= check(WFormat::kInt4, ScaleMode::kScale, false, 300, 4096, 4096, 128, true, 2, 1, rng), ++cases;
  ok &= check(WFormat::kInt4, ScaleMode::kScale, true, 129, 1024, 2048, 128, false, 1, 1, rng), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kOriginal, false, 77, 528, 1536, 64, true, 0, 1, rng), ++cases;
  ok &= check(WFormat::kInt4, ScaleMode::kScale, false, 128, 4096, 4096, 128, true, 1, 4, rng), ++cases;
  ok &= check(WFormat::kInt4, ScaleMode::kScale, true, 256, 2048, 3584, 3584, false, 0, 7, rng), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kQuantized, false, 100, 1024, 4096, 512, true, 1, 8, rng), ++cases;
  ok &= check(WFormat::kInt8, ScaleMode::kScale, false, 300, 4096, 4096, 128, true, 2, 1, rng), ++cases;
  ok &= check(WFormat::kInt8, ScaleMode::kScale, true, 128, 4096, 4096, 4096, false, 1, 4, rng), ++cases;
  ok &= check(WFormat::kUInt8, ScaleMode::kQuantized, true, 96, 2048, 2048, 128, true, 0, 2, rng), ++cases;
  // the 256-row tiles on a layer of whole and partial weight tiles (N = 4352: 17 of them)
  ok &= check(WFormat::kInt4, ScaleMode::kScale, false, 100, 4352, 2048, 128, true, 5, 1, rng), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kOriginal, true, 300, 4224, 1024, 64, false, 6, 1, rng), ++cases;
  ok &= check(WFormat::kInt8, ScaleMode::kQuantized, false, 129, 4352, 2048, 128, true, 6, 1, rng), ++cases;
  // ... the 32-row one at decode sizes: one activation tile, two (M = 37: the second partly filled)
  ok &= check(WFormat::kInt4, ScaleMode::kScale, true, 24, 4352, 2048, 128, false, 7, 1, rng), ++cases;
  ok &= check(WFormat::kUInt8, ScaleMode::kOriginal, false, 37, 4352, 2048, 64, true, 7, 1, rng), ++cases;
  // stream-K on a 132-SM GPU: 288 tiles (a wave whole, 156 tiles shared), 148 tiles (all shared; a wave and a
  // bit), 32 tiles (each shared by about four CTAs)
  ok &= check(WFormat::kInt4, ScaleMode::kScale, false, 384, 12288, 1024, 128, true, 3, 1, rng), ++cases;
  ok &= check(WFormat::kInt4, ScaleMode::kOriginal, true, 260, 9472, 2048, 128, true, 4, 1, rng), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kQuantized, true, 200, 2048, 4096, 64, false, 3, 1, rng), ++cases;
  ok &= check(WFormat::kInt8, ScaleMode::kScale, false, 256, 4096, 4096, 4096, true, 4, 1, rng), ++cases;
  // K split in the stream-K tiles' kernel: 64 tiles in 2 parts, 28 in 4, 64 stages in 3 uneven parts (22, 21, 21)
  // across groups of 64, one group per row in 2 parts; bf16, zeros, table codes
  ok &= check(WFormat::kInt4, ScaleMode::kScale, false, 256, 4096, 4096, 128, true, 3, 2, rng), ++cases;
  ok &= check(WFormat::kInt4, ScaleMode::kScale, true, 256, 3584, 18944, 128, false, 4, 4, rng), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kOriginal, true, 200, 2048, 4096, 64, true, 3, 3, rng), ++cases;
  ok &= check(WFormat::kInt8, ScaleMode::kNone, false, 130, 1024, 2048, 2048, false, 4, 2, rng), ++cases;
  ok &= check(WFormat::kNF4, ScaleMode::kScale, false, 128, 4096, 4096, 128, true, 3, 4, rng), ++cases;
  // the table formats at layer sizes: persistent whole and split, stream-K
  ok &= check(WFormat::kNF4, ScaleMode::kScale, false, 300, 4096, 4096, 128, true, 2, 1, rng), ++cases;
  ok &= check(WFormat::kNF4, ScaleMode::kScale, true, 128, 4096, 4096, 128, false, 1, 4, rng), ++cases;
  ok &= check(WFormat::kNF4, ScaleMode::kNone, false, 260, 9472, 2048, 2048, true, 4, 1, rng), ++cases;
  ok &= check(WFormat::kFP4E2M1, ScaleMode::kScale, true, 300, 4096, 4096, 64, true, 2, 1, rng), ++cases;
  ok &= check(WFormat::kFP4E2M1, ScaleMode::kScale, false, 384, 12288, 1024, 128, false, 3, 1, rng), ++cases;
  // the group terms' loads in runs of 4, 2 and 1 groups (28, 22 and 21 groups a row), and from scales and zeros
  // 6 or 4 bytes past an aligned address (runs of 1 and 2 groups where 16 groups would take runs of 8)
  ok &= check(WFormat::kInt4, ScaleMode::kScale, false, 128, 272, 3584, 128, true, 1, 1, rng), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kOriginal, true, 100, 528, 1408, 64, false, 0, 2, rng), ++cases;
  ok &= check(WFormat::kInt8, ScaleMode::kQuantized, false, 64, 1024, 1344, 64, true, 1, 1, rng), ++cases;
  ok &= check(WFormat::kInt4, ScaleMode::kRescale, false, 200, 272, 2048, 128, true, 1, 1, rng, true, 3), ++cases;
  ok &= check(WFormat::kUInt4, ScaleMode::kOriginal, true, 96, 272, 2048, 128, false, 0, 1, rng, true, 2), ++cases;
  std::printf("gemm_cutlass selftest: %s  %d cases\n", ok ? "PASS" : "FAIL", cases);
  return ok ? 0 : 1;
}
