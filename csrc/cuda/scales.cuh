// Loading the group scales / zeros of a lane's rows n and n+8 (raw 16-bit or 8-bit values,
// turned into per-row constants by convert.cuh's rowp_make2).
#pragma once

#include "params.cuh"
#include "ptx.cuh"

namespace bitblas_jax {
namespace cudak {

// Scale / zero bits of rows n and n+8 at one group, as loaded (GroupBits::pack packs them).
struct GroupBits {
  uint32_t s0, s1, z0, z1;
  // (s, z): row n in the low 16 bits, row n+8 in the high 16 bits
  __device__ __forceinline__ void pack(uint32_t& s, uint32_t& z) const {
    s = s0 | (s1 << 16);
    z = z0 | (z1 << 16);
  }
};
// The loads behind load_group_raw: element i of the scale / zero rows at s / z
// (z null: no zeros) and element i of the rows 8 below them.
__device__ __forceinline__ GroupBits load_group_at(const KParams& p, const uint8_t* s, const uint8_t* z,
                                                   long long i) {
  GroupBits b{0u, 0u, 0u, 0u};
  const long long g8 = 8LL * p.G;  // elements from row n to row n+8
  b.s0 = ldg_u16_u32(s, i);
  b.s1 = ldg_u16_u32(s, i + g8);
  if (z != nullptr) {
    const bool zbyte = p.mode == MODE_QUANT;
    b.z0 = zbyte ? ldg_u8_u32(z, i) : ldg_u16_u32(z, i);
    b.z1 = zbyte ? ldg_u8_u32(z, i + g8) : ldg_u16_u32(z, i + g8);
  }
  return b;
}
// The zeros of a mode, or null (MODE_QUANT is >= MODE_ORIGINAL: 8-bit zeros).
__device__ __forceinline__ const uint8_t* group_zeros(const KParams& p) {
  return p.mode >= MODE_ORIGINAL ? static_cast<const uint8_t*>(p.zeros) : nullptr;
}
// The group of row n (and n + 8) at group index gi, packed (for loads used right away).
__device__ __forceinline__ void load_group_raw(const KParams& p, long long n, int gi, uint32_t& s,
                                               uint32_t& z) {
  if (p.mode == MODE_NONE) {
    s = z = 0u;
    return;
  }
  load_group_at(p, static_cast<const uint8_t*>(p.scale), group_zeros(p), n * p.G + gi).pack(s, z);
}

}  // namespace cudak
}  // namespace bitblas_jax
