// A bounded single-producer/single-consumer ring of fixed-size slots.
//
// Overflow policy: the ring never blocks the producer and never overwrites unread data. When it
// is full, try_acquire() returns nullptr and the producer drops what it wanted to write, counting
// it (the capture records those samples as a ring_overflow gap). The consumer sees a gap in the
// sample indices, never stale or reordered data.
#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <memory>
#include <new>

namespace meltrig::rig {

template <typename T>
class SpscRing {
 public:
  /// `capacity` slots, rounded up to a power of two.
  explicit SpscRing(std::size_t capacity) {
    std::size_t c = 1;
    while (c < capacity)
      c <<= 1;
    mask_ = c - 1;
    slots_ = std::make_unique<T[]>(c);
  }

  std::size_t capacity() const { return mask_ + 1; }

  /// Producer: a slot to fill, or nullptr when full. Call commit() after filling it.
  T* try_acquire() {
    std::size_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_cache_ > mask_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h - tail_cache_ > mask_) return nullptr;
    }
    return &slots_[h & mask_];
  }
  /// Producer: publishes the slot from try_acquire().
  void commit() {
    head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  /// Consumer: the oldest unread slot, or nullptr when empty. Call pop() when done with it.
  T* front() {
    std::size_t t = tail_.load(std::memory_order_relaxed);
    if (t == head_cache_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (t == head_cache_) return nullptr;
    }
    return &slots_[t & mask_];
  }
  /// Consumer: releases the slot from front().
  void pop() { tail_.store(tail_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }

  /// Approximate number of filled slots (exact when called by either side while the other waits).
  std::size_t size() const {
    return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire);
  }

 private:
  static constexpr std::size_t kLine = 64;
  std::unique_ptr<T[]> slots_;
  std::size_t mask_ = 0;
  alignas(kLine) std::atomic<std::size_t> head_{0};
  std::size_t tail_cache_ = 0;  // producer's view of tail
  alignas(kLine) std::atomic<std::size_t> tail_{0};
  std::size_t head_cache_ = 0;  // consumer's view of head
};

}  // namespace meltrig::rig
