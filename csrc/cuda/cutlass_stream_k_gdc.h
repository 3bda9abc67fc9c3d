// CUTLASS's stream-K tile scheduler for a GEMM that launches as the programmatic dependent of the group terms
// kernel (gemm_cutlass.cuh). With CUTLASS_ENABLE_GDC_FOR_SM90 the cooperative kernel asks its scheduler
// `is_last_tile` (to let the next grid launch early), and CUTLASS 4.2's stream-K scheduler does not compile there:
// its const `is_last_tile` passes its own work index by non-const reference. This scheduler is CUTLASS's
// (PersistentTileSchedulerSm90StreamK: the same work decomposition, workspace and fixup) with that one question
// answered from a copy of the work index it keeps beside the base's (private there), advanced with it.
// Selected by the tag StreamKSchedulerWithGdc (a specialization of CUTLASS's TileSchedulerSelector below).
#pragma once

#include "cutlass/gemm/kernel/sm90_tile_scheduler_stream_k.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"

namespace bitblas_jax {

struct StreamKSchedulerWithGdc {};  // the tag GemmUniversal takes

template <class TileShape, class ClusterShape>
class StreamKSchedulerGdc
    : public cutlass::gemm::kernel::detail::PersistentTileSchedulerSm90StreamK<TileShape, ClusterShape> {
  using Base = cutlass::gemm::kernel::detail::PersistentTileSchedulerSm90StreamK<TileShape, ClusterShape>;
  uint64_t linear_idx_ = 0;  // the base's current work index: set as the base sets it, advanced with it

  CUTLASS_DEVICE static uint64_t grid_ctas() {
    return uint64_t(gridDim.x) * uint64_t(gridDim.y) * uint64_t(gridDim.z);
  }

 public:
  using typename Base::Params;
  using typename Base::WorkTileInfo;
  using Base::advance_to_next_work;  // the overloads not redefined here
  using Base::fetch_next_work;

  CUTLASS_HOST_DEVICE StreamKSchedulerGdc() {}

  CUTLASS_DEVICE StreamKSchedulerGdc(Params const& params) : Base(params) {
    linear_idx_ = params.raster_order_ == Base::RasterOrder::AlongN
                      ? uint64_t(blockIdx.x) + uint64_t(blockIdx.y) * uint64_t(gridDim.x)
                      : uint64_t(blockIdx.x) * uint64_t(gridDim.y) + uint64_t(blockIdx.y);
  }

  CUTLASS_DEVICE void advance_to_next_work(uint32_t advance_count = 1) {
    Base::advance_to_next_work(advance_count);
    linear_idx_ += grid_ctas() * uint64_t(advance_count);
  }

  // The base's, with the advance going through this class (so the copy of the index follows).
  CUTLASS_DEVICE auto fetch_next_work(WorkTileInfo work_tile_info) {
    if (this->continue_current_work(work_tile_info)) return cute::make_tuple(work_tile_info, true);
    advance_to_next_work();
    return cute::make_tuple(this->get_current_work(), true);
  }
  template <class TileSchedulerPipeline, class TileSchedulerPipelineState>
  CUTLASS_DEVICE auto fetch_next_work(WorkTileInfo work_tile_info, TileSchedulerPipeline&, TileSchedulerPipelineState) {
    return fetch_next_work(work_tile_info);
  }

  // Whether this CTA has no work after `work_tile_info`: its remaining k-tiles, else a valid unit at the next
  // index it would take. The lookup's first argument is an output (where the unit's k range starts), unused.
  CUTLASS_DEVICE bool is_last_tile(WorkTileInfo work_tile_info, uint32_t advance_count = 1) const {
    if (this->continue_current_work(work_tile_info)) return false;
    uint32_t unit_iter_start = 0;
    return !Base::get_current_work_for_linear_idx(unit_iter_start, linear_idx_ + grid_ctas() * uint64_t(advance_count),
                                                  cute::block_id_in_cluster(), this->scheduler_params)
                .is_valid();
  }
};

}  // namespace bitblas_jax

namespace cutlass::gemm::kernel::detail {

template <class TileShape, class ClusterShape, uint32_t SchedulerPipelineStageCount>
struct TileSchedulerSelector<bitblas_jax::StreamKSchedulerWithGdc, arch::Sm90, TileShape, ClusterShape,
                             SchedulerPipelineStageCount> {
  using Scheduler = bitblas_jax::StreamKSchedulerGdc<TileShape, ClusterShape>;
};

}  // namespace cutlass::gemm::kernel::detail
