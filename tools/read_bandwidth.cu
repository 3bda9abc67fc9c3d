// Read-only bandwidth of a plain streaming kernel per buffer size (rotated over > L2), in a CUDA graph:
// the realistic floor a decode kernel of that many weight bytes is compared with (docs/KERNELS.md).
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a tools/read_bandwidth.cu -o build/read_bandwidth
#include <cstdio>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)
__global__ void rd(const uint4* __restrict__ p, size_t n, unsigned* out) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p + i));
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;
}
int main() {
  int sms; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  unsigned* out; CK(cudaMalloc(&out, 4));
  for (double mb : {8.4, 17.0, 33.0, 58.0, 117.0, 134.0}) {
    size_t bytes = (size_t)(mb * 1e6) & ~size_t(255);
    int bufs = std::max(2, (int)(200e6 / bytes) + 1);
    std::vector<uint4*> b(bufs);
    for (auto& x : b) { CK(cudaMalloc(&x, bytes)); CK(cudaMemset(x, 1, bytes)); }
    cudaStream_t st; CK(cudaStreamCreate(&st));
    for (int per_sm : {2, 4, 8}) {
      int grid = sms * per_sm;
      cudaGraph_t g; cudaGraphExec_t ge;
      const int iters = 40;
      CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
      for (int i = 0; i < iters; ++i) rd<<<grid, 512, 0, st>>>(b[i % bufs], bytes / 16, out);
      CK(cudaStreamEndCapture(st, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
      std::vector<float> ts;
      for (int r = 0; r < 12; ++r) {
        CK(cudaEventRecord(e0, st)); CK(cudaGraphLaunch(ge, st)); CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1)); float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms * 1e3f / iters);
      }
      std::sort(ts.begin(), ts.end());
      printf("read %7.1f MB grid %4d x512: %7.2f us  %.2f TB/s\n", mb, grid, ts[6], bytes / (ts[6] * 1e-6) / 1e12);
      cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    }
    for (auto& x : b) cudaFree(x);
  }
  return 0;
}
