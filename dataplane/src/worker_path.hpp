// The worker's per-burst path: hand the received frames to process_burst, carry out each verdict
// on the mbuf (new start and length, per-backend traffic, the port to send it from) and buffer
// transmits per port. Runtime::worker runs it, and lb_bench runs the very same code, so the
// benchmark measures what the daemon does. Fast path: no allocation, no locks, no logging.
#pragma once

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstddef>
#include <cstdint>

#include "runtime.hpp"

namespace stacknode::dataplane {

// One worker's transmit buffers, a burst per port: a buffer is sent when full and by flush_all()
// at the end of each received burst. Frames the transmit queue does not take are freed and
// counted (WorkerExtra::tx_dropped).
class TransmitBuffers {
 public:
  TransmitBuffers(const std::uint16_t* port_ids, std::size_t port_count, std::uint16_t queue,
                  WorkerExtra& extra)
      : port_ids_(port_ids), port_count_(port_count), queue_(queue), extra_(extra) {}

  void add(std::size_t port, rte_mbuf* mbuf) {
    outgoing_[port][count_[port]++] = mbuf;
    if (count_[port] == burst_size) flush(port);
  }

  void flush(std::size_t port) {
    const std::uint16_t count = count_[port];
    if (count == 0) return;
    const std::uint16_t sent = rte_eth_tx_burst(port_ids_[port], queue_, outgoing_[port], count);
    if (sent < count) {
      extra_.tx_dropped += count - sent;
      rte_pktmbuf_free_bulk(outgoing_[port] + sent, count - sent);
    }
    count_[port] = 0;
  }

  void flush_all() {
    for (std::size_t port = 0; port < port_count_; ++port) flush(port);
  }

 private:
  const std::uint16_t* port_ids_;
  std::size_t port_count_;
  std::uint16_t queue_;
  WorkerExtra& extra_;
  rte_mbuf* outgoing_[max_ports][burst_size];
  std::uint16_t count_[max_ports] = {};
};

// Frames the control thread originated (ARP requests, announcements), each with its port index in
// mbuf->port, from `ring` to the transmit buffers. `scratch` holds burst_size pointers.
inline void send_control_frames(rte_ring* ring, rte_mbuf** scratch, TransmitBuffers& transmit) {
  const unsigned count =
      rte_ring_sc_dequeue_burst(ring, reinterpret_cast<void**>(scratch), burst_size, nullptr);
  for (unsigned index = 0; index < count; ++index) transmit.add(scratch[index]->port, scratch[index]);
  transmit.flush_all();
}

// Carries out the verdict of each of `count` frames received on port index `port`, processed as
// one burst (process_burst: process_packet's verdicts, with the connection table prefetched ahead).
// Punted frames go to `punt_ring` (multi-producer); when it is full, or null, they are freed and
// counted (WorkerExtra::punt_dropped).
inline void handle_burst(const Snapshot& snapshot, LcoreState& state, WorkerExtra& extra,
                         BackendTraffic* traffic, std::size_t port, rte_mbuf** received,
                         std::uint16_t count, std::uint64_t now_ms, rte_ring* punt_ring,
                         TransmitBuffers& transmit) {
  const std::size_t service_port = snapshot.service_port();
  // `count` is at most burst_size (what rte_eth_rx_burst was asked for). The frame arrays are
  // zeroed only to keep GCC's -Wmaybe-uninitialized quiet at the process_burst call.
  rte_mbuf* mbufs[burst_size];
  std::uint8_t* frames[burst_size] = {};
  std::uint32_t lengths[burst_size] = {};
  Verdict verdicts[burst_size];
  std::uint16_t frame_count = 0;
  for (std::uint16_t index = 0; index < count; ++index) {
    rte_mbuf* mbuf = received[index];
    if (mbuf->nb_segs != 1) {  // scatter is off, so a chain means a device we did not expect
      rte_pktmbuf_free(mbuf);
      continue;
    }
    mbufs[frame_count] = mbuf;
    frames[frame_count] = rte_pktmbuf_mtod(mbuf, std::uint8_t*);
    lengths[frame_count] = rte_pktmbuf_data_len(mbuf);
    ++frame_count;
  }
  process_burst(snapshot, state, static_cast<std::uint16_t>(port), frames, lengths, frame_count, now_ms, verdicts);
  for (std::uint16_t index = 0; index < frame_count; ++index) {
    rte_mbuf* mbuf = mbufs[index];
    const Verdict& verdict = verdicts[index];
    if (verdict.action == Action::drop) {
      rte_pktmbuf_free(mbuf);
      continue;
    }
    if (verdict.action == Action::punt) {
      if (punt_ring == nullptr || rte_ring_mp_enqueue(punt_ring, mbuf) != 0) {
        ++extra.punt_dropped;
        rte_pktmbuf_free(mbuf);
      }
      continue;
    }
    // Apply the verdict's new start and length to the mbuf (process_packet checked the headroom).
    const std::ptrdiff_t moved = verdict.data - frames[index];
    mbuf->data_off = static_cast<std::uint16_t>(mbuf->data_off + moved);
    mbuf->data_len = static_cast<std::uint16_t>(verdict.length);
    mbuf->pkt_len = verdict.length;
    std::size_t out = port;
    if (verdict.action == Action::forward) {
      out = service_port;
      BackendTraffic& backend = traffic[verdict.backend];
      ++backend.packets;
      backend.bytes += verdict.length;
      backend.new_flows += verdict.new_flow ? 1 : 0;
    }
    transmit.add(out, mbuf);
  }
  transmit.flush_all();
}

}  // namespace stacknode::dataplane
