// The device layers shared by the CUDA kernels, in dependency order:
//   params.cuh         KParams, format classes, mode / output ids, type traits
//   ptx.cuh            PTX wrappers: loads, cp.async, griddepcontrol, ldmatrix, mma.sync, LOP3
//   convert.cuh        in-register dequantization of the packed codes, the NF4 table
//   scales.cuh         group scale / zero loads
//   epilogue.cuh       output write (cast, bias)
//   splitk_reduce.cuh  split-K partials and their reduction
#pragma once

#include "params.cuh"
#include "ptx.cuh"
#include "convert.cuh"
#include "scales.cuh"
#include "epilogue.cuh"
#include "splitk_reduce.cuh"
