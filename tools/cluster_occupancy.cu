// How many clusters of 1, 2 and 4 CTAs an sm_90 GPU runs at once for a CTA shaped like gemm_wgmma's
// (384 threads; 2 CTAs per SM at <= 106 KB of shared memory, 1 at <= 220 KB): a cluster's CTAs share
// a GPC, so where a GPC has an odd number of SMs a one-CTA-per-SM cluster of 2 leaves one idle, and
// the plan's one-wave split (num_sms) would spill into a second wave.
//   nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a tools/cluster_occupancy.cu -o /tmp/cl_occ && /tmp/cl_occ
#include <cstdio>

#include <cuda_runtime.h>

#include "../csrc/cuda/cluster_attr.h"

__global__ void cta_shape(int* out) {
  extern __shared__ int smem[];
  if (out != nullptr) out[blockIdx.x] = smem[threadIdx.x];
}

#define CHECK(x)                                                                      \
  do {                                                                                \
    cudaError_t e = (x);                                                              \
    if (e != cudaSuccess) {                                                           \
      std::printf("%s: %s\n", #x, cudaGetErrorString(e));                             \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

int main() {
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  std::printf("SMs: %d\n", sms);
  CHECK(cudaFuncSetAttribute(cta_shape, cudaFuncAttributeMaxDynamicSharedMemorySize, 221 * 1024));
  for (int smem_kb : {106, 221}) {
    for (int cl : {1, 2, 4}) {
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = dim3(cl * 256);
      cfg.blockDim = dim3(384);
      cfg.dynamicSmemBytes = static_cast<size_t>(smem_kb) * 1024;
      cudaLaunchAttribute attr = bitblas_jax::cluster_attr(cl);
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      int clusters = 0;
      CHECK(cudaOccupancyMaxActiveClusters(&clusters, cta_shape, &cfg));
      std::printf("shared memory %3d KB, cluster %d: %4d clusters at once = %4d CTAs (%d SMs x %d per SM = %d)\n",
                  smem_kb, cl, clusters, clusters * cl, sms, smem_kb > 110 ? 1 : 2, sms * (smem_kb > 110 ? 1 : 2));
    }
  }
  return 0;
}
