// Splitting the CPU kernels' row bands over threads (both kernels share the rule).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

namespace bitblas_jax {
namespace cpu {

// Problems with at most this many multiply-adds run on the calling thread;
// above it each thread gets at least kThreadWork of them.
constexpr double kThreadMinWork = double(1 << 21);
constexpr double kThreadWork = double(1 << 20);

inline int pick_threads(int64_t bands, double work) {
  if (work <= kThreadMinWork) return 1;
  int64_t n = std::thread::hardware_concurrency();
  if (const char* s = std::getenv("BITBLAS_JAX_CPU_THREADS")) {  // optional override
    const long v = std::strtol(s, nullptr, 10);
    if (v > 0) n = v;
  }
  n = std::min<int64_t>({std::max<int64_t>(n, 1), bands,
                         std::max<int64_t>(int64_t(work / kThreadWork), 1)});
  return int(std::max<int64_t>(n, 1));
}

// Runs run(b0, b1) on [b0, b1) and turns any exception into a message.
template <class Run>
void run_guarded(const Run& run, int64_t b0, int64_t b1, std::string* err) {
  try {
    run(b0, b1);
  } catch (const std::exception& e) {
    *err = std::string("cpu kernel failed: ") + e.what();
  } catch (...) {
    *err = "cpu kernel failed";
  }
}

// run(b0, b1) over bands [0, bands) split across threads (work: multiply-adds in all).
// Returns "" or the first failure's message.
template <class Run>
std::string run_band_threads(int64_t bands, double work, const Run& run) {
  const int nt = pick_threads(bands, work);
  std::vector<std::string> errors(nt);
  std::vector<std::thread> threads;
  threads.reserve(nt);
  for (int t = 0; t < nt; ++t) {
    const int64_t b0 = bands * t / nt, b1 = bands * (t + 1) / nt;
    if (t + 1 < nt) {
      try {
        threads.emplace_back([&run, b0, b1, &errors, t] { run_guarded(run, b0, b1, &errors[t]); });
        continue;
      } catch (...) {  // no thread available: do this share here
      }
    }
    run_guarded(run, b0, b1, &errors[t]);
  }
  for (std::thread& th : threads) th.join();
  for (const std::string& e : errors)
    if (!e.empty()) return e;
  return "";
}

}  // namespace cpu
}  // namespace bitblas_jax
