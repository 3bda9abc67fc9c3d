// The launch attribute that runs a kernel's CTAs in clusters of `ctas` along x (sm_90+): for the
// dispatcher's launches and occupancy queries, and tools/cluster_occupancy.cu.
#pragma once

#include <cuda_runtime.h>

namespace bitblas_jax {

inline cudaLaunchAttribute cluster_attr(int ctas) {
  cudaLaunchAttribute a = {};
  a.id = cudaLaunchAttributeClusterDimension;
  a.val.clusterDim.x = static_cast<unsigned>(ctas);
  a.val.clusterDim.y = 1;
  a.val.clusterDim.z = 1;
  return a;
}

}  // namespace bitblas_jax
