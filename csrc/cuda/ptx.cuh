// Inline-PTX wrappers: global loads (streaming, narrow into 32-bit registers), cp.async,
// programmatic dependent launch, thread-block clusters, L2 prefetch, shared-memory loads and ldmatrix, mma.sync
// with its accumulator fragments, and LOP3. (The Hopper wgmma wrappers are generated:
// wgmma_ops.cuh.)
#pragma once

#include "params.cuh"

namespace bitblas_jax {
namespace cudak {

// Weight stream: read once, keep out of L1, ask L2 for 256-byte lines.
__device__ __forceinline__ uint4 ldg_stream(const void* ptr) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(ptr));
  return r;
}

// 16- / 8-bit loads straight into a 32-bit register (zero-extended by the load
// itself, so no masking instruction waits on the load right after it).
__device__ __forceinline__ uint32_t ldg_u16_u32(const void* base, long long idx) {
  uint32_t v;
  asm("ld.global.nc.u16 %0, [%1];" : "=r"(v) : "l"(reinterpret_cast<const uint16_t*>(base) + idx));
  return v;
}
__device__ __forceinline__ uint32_t ldg_u8_u32(const void* base, long long idx) {
  uint32_t v;
  asm("ld.global.nc.u8 %0, [%1];" : "=r"(v) : "l"(reinterpret_cast<const uint8_t*>(base) + idx));
  return v;
}
// 32 bits at a 4-byte aligned address (read-only path)
__device__ __forceinline__ uint32_t ldg_u32_at(const void* addr) {
  return __ldg(reinterpret_cast<const unsigned int*>(addr));
}
__device__ __forceinline__ uint16_t ldg_u16(const void* base, long long idx) {
  return __ldg(reinterpret_cast<const unsigned short*>(base) + idx);
}
__device__ __forceinline__ uint16_t ldg_u8(const void* base, long long idx) {
  return __ldg(reinterpret_cast<const unsigned char*>(base) + idx);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;\n" ::"r"(smem), "l"(gmem));
}
// 4 bytes (a 4-byte aligned source), through L1.
__device__ __forceinline__ void cp_async4(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem), "l"(gmem));
}
// Weight stream into a shared-memory ring (bypasses L1, 256-byte L2 lines).
__device__ __forceinline__ void cp_async16_stream(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(smem), "l"(gmem));
}
// Programmatic dependent launch (sm_90+; no-ops before Hopper and when the
// launch did not ask for it). wait: block until the previous kernel in the
// stream has finished and its writes are visible; nothing this kernel reads
// or writes as data may come before it. launch_dependents: let the next
// kernel (if launched with PDL) start its own pre-wait prologue.
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Thread-block clusters (sm_90+; a launch without the cluster attribute is a cluster of one CTA).
// Before sm_90 every CTA is its own cluster of one: rank 0 of 1, its own shared memory, a CTA barrier.
// This CTA's rank in its cluster and the cluster's size.
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}
__device__ __forceinline__ uint32_t cluster_ctas() {
  uint32_t n = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(n));
#endif
  return n;
}
// Every thread of every CTA of the cluster: shared-memory stores before it are visible cluster-wide
// after it (release / acquire).
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
  __syncthreads();
#endif
}
// The float at this CTA's shared address `addr` in CTA `rank` of the cluster (distributed shared memory).
__device__ __forceinline__ float ld_shared_cluster_f32(uint32_t addr, uint32_t rank) {
  float v;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(addr), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(remote) : "memory");
#else
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr) : "memory");
#endif
  return v;
}

// Pull a line into L2 only. Safe before griddep_wait: L2 is the point of
// coherence, so a line the previous kernel writes later is still read right.
__device__ __forceinline__ void prefetch_l2(const void* gmem) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t addr, uint32_t& r0, uint32_t& r1) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(addr));
}
// bar.sync on named barrier `id` (1..15; 0 is __syncthreads') for `threads` threads (a multiple of 32).
__device__ __forceinline__ void bar_sync_named(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ void sts32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 r;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "r"(addr));
  return r;
}

// D = A(16x16, weight rows n x k) * B(16x8, k x activation rows m) + D.
template <typename T>
__device__ __forceinline__ void mma_f32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_f32<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_f32<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                       uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_f16(uint32_t (&d)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%0,%1};\n"
      : "+r"(d[0]), "+r"(d[1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// D = A(16x32, weight rows n x k) * B(32x8, k x activation rows m) + D, int8 operands, int32 sums.
__device__ __forceinline__ void mma_m16n8k32_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The outputs of a warp of the mma.sync GEMMs (gemm_mma, gemm_mma_a8), which holds two 16-row bands bi
// (band_ok[bi]: the band exists) x MBW n8 blocks mb x the C fragment's elements e (weight row g + 8 (e >> 1),
// activation row 2c + (e & 1)): store(bi, mb, e, m, n) for each one with m < M, where n = nrow0 (band 0's
// row g) + 16 bi + 8 (e >> 1) and m = mw (the warp's first activation row) + 8 mb + 2c + (e & 1).
template <int MBW, typename Store>
__device__ __forceinline__ void for_each_output(const bool (&band_ok)[2], long long nrow0, long long mw, int c,
                                                long long M, Store&& store) {
#pragma unroll
  for (int bi = 0; bi < 2; ++bi) {
    if (!band_ok[bi]) continue;
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const long long m = mw + mb * 8 + 2 * c + (e & 1);
        if (m < M) store(bi, mb, e, m, nrow0 + 16 * bi + 8 * (e >> 1));
      }
  }
}

// Accumulators of one 16(n) x 8(m) mma tile: fp32 (4 regs) or fp16 (2 half2 regs).
// Element e (0..3): row g + 8*(e>>1) (n), column 2c + (e&1) (m).
template <bool ACC16>
struct Acc;
template <>
struct Acc<false> {
  float v[4];
  __device__ __forceinline__ void zero() { v[0] = v[1] = v[2] = v[3] = 0.f; }
  template <typename T>
  __device__ __forceinline__ void mma(const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_f32<T>(v, a, b0, b1);
  }
  __device__ __forceinline__ float get(int e) const { return v[e]; }
};
template <>
struct Acc<true> {
  uint32_t v[2];
  __device__ __forceinline__ void zero() { v[0] = v[1] = 0u; }
  template <typename T>
  __device__ __forceinline__ void mma(const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_f16(v, a, b0, b1);
  }
  __device__ __forceinline__ float get(int e) const {
    const __half2 h = as_t2<__half2>(v[e >> 1]);
    return (e & 1) ? __high2float(h) : __low2float(h);
  }
};

// (a & mask) | magic in one LOP3 (SASS LOP3 takes one immediate, so keep both constants in registers).
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(r) : "r"(a), "r"(mask), "r"(magic));
  return r;
}

}  // namespace cudak
}  // namespace bitblas_jax
